"""Experiment configs are validated key by key, with the file and a fix in every error."""
from __future__ import annotations

import textwrap

import pytest

from kerasprune.errors import ConfigError
from kerasprune.experiment.config import load_config

BASE = """
experiment: t
dataset: mnist
model: lenet5
methods:
  - method: tfmot_gmp
    sparsity: [0.8, 0.9]
budgets:
  cpu:
    train: {epochs: 2, learning_rate: 1e-3}
    finetune: {epochs: 1}
"""


def _write(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_lists_expand_into_runs_after_the_dense_baseline(tmp_path):
    config = load_config(_write(tmp_path, BASE))
    assert [r.run_id for r in config.runs] == ["dense", "tfmot_gmp_sparsity-0.8", "tfmot_gmp_sparsity-0.9"]
    assert config.budget.train.learning_rate == 0.001  # YAML's 1e-3 string is read as a number
    assert config.budget.model == "lenet5"


def test_fingerprints_differ_between_runs_and_budgets(tmp_path):
    config = load_config(_write(tmp_path, BASE))
    prints = {config.fingerprint(r) for r in config.runs}
    assert len(prints) == 3


@pytest.mark.parametrize("edit, message", [
    (("model: lenet5", "model: lenet5\nmodle_args: {}"), "unknown key 'modle_args'. Did you mean 'model_args'"),
    (("epochs: 2,", "epoch: 2,"), "budgets.cpu.train: unknown key 'epoch'"),
    (("sparsity: [0.8, 0.9]", "sparsity: 80"), r"sparsity must be a fraction in \(0, 1\)"),
    (("method: tfmot_gmp", "method: tfmot_gpm"), "unknown method 'tfmot_gpm'"),
    (("    sparsity: [0.8, 0.9]\n", ""), "method 'tfmot_gmp' needs 'sparsity'"),
    (("learning_rate: 1e-3", "learning_rate: fast"), "learning_rate must be a number"),
    (("dataset: mnist\n", ""), "missing required key 'dataset'"),
])
def test_mistakes_are_named_with_file_and_key(tmp_path, edit, message):
    path = _write(tmp_path, BASE.replace(*edit))
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_missing_budget_lists_the_defined_ones(tmp_path):
    with pytest.raises(ConfigError, match="no budget 'full'; this config defines cpu"):
        load_config(_write(tmp_path, BASE), budget="full")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "a: [1,"))


def test_every_shipped_config_is_valid_for_every_budget():
    from pathlib import Path

    import yaml

    configs = sorted((Path(__file__).parents[1] / "experiments").glob("*.yaml"))
    assert configs
    for path in configs:
        for budget in yaml.safe_load(path.read_text())["budgets"]:
            load_config(path, budget)


def test_a_budget_can_tailor_method_settings(tmp_path):
    text = BASE.replace("    finetune: {epochs: 1}", "    finetune: {epochs: 1}\n    method_args: {tfmot_gmp: {frequency: 7}}")
    config = load_config(_write(tmp_path, text))
    assert {r.params.get("frequency") for r in config.runs if r.method == "tfmot_gmp"} == {7}
    with pytest.raises(ConfigError, match="method_args.tfmot_gmp: unknown key 'freq'"):
        load_config(_write(tmp_path, text.replace("frequency: 7", "freq: 7")))
