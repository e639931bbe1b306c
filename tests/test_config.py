"""Experiment configs are validated key by key, with the file and a fix in every error."""
from __future__ import annotations

import textwrap

import pytest

from kerasprune.errors import ConfigError
from kerasprune.experiment.config import load_config
from kerasprune.experiment.cache import fingerprint

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


def test_fingerprints_follow_what_each_run_depends_on(tmp_path):
    config = load_config(_write(tmp_path, BASE))
    dense, pruned = config.runs[0], config.runs[1]
    assert len({fingerprint(config, r) for r in config.runs}) == 3
    finetune_changed = load_config(_write(tmp_path, BASE.replace("finetune: {epochs: 1}", "finetune: {epochs: 2}")))
    assert fingerprint(finetune_changed, dense) == fingerprint(config, dense)  # dense never fine-tunes
    assert fingerprint(finetune_changed, pruned) != fingerprint(config, pruned)
    train_changed = load_config(_write(tmp_path, BASE.replace("epochs: 2,", "epochs: 3,")))
    assert fingerprint(train_changed, pruned) != fingerprint(config, pruned)  # through its baseline
    taught = load_config(_write(tmp_path, BASE.replace("finetune: {epochs: 1}", "finetune: {epochs: 1, distill: 0.5}")))
    assert fingerprint(taught, pruned) != fingerprint(config, pruned)
    idle = load_config(_write(tmp_path, BASE.replace("finetune: {epochs: 1}", "finetune: {epochs: 1, temperature: 2}")))
    assert fingerprint(idle, pruned) == fingerprint(config, pruned)  # a temperature without a teacher


def test_a_setting_added_later_counts_only_when_set(tmp_path):
    def rigl(extra):
        text = BASE.replace("method: tfmot_gmp", "method: rigl").replace("[0.8, 0.9]", f"0.9\n    {extra}")
        config = load_config(_write(tmp_path, text))
        return fingerprint(config, config.runs[1])

    assert rigl("sparse_init: false") == rigl("")  # saved runs from before it stay valid
    assert rigl("sparse_init: true") != rigl("")
    assert rigl("gradient_batches: 1") == rigl("")
    assert rigl("gradient_batches: 10") != rigl("")
    assert rigl("per_row: false") == rigl("")
    assert rigl("per_row: true") != rigl("")

    def rl(extra):
        settings = f"macs: 0.5\n    intervals: 1\n    {extra}"
        text = BASE.replace("method: tfmot_gmp", "method: rl").replace("sparsity: [0.8, 0.9]", settings)
        config = load_config(_write(tmp_path, text))
        return fingerprint(config, config.runs[1])

    assert rl("revise: false") == rl("")
    assert rl("revise: true") != rl("")
    with pytest.raises(ConfigError, match="revise must be true or false"):
        rl("revise: 1")
    assert rl("start_rankings: false") == rl("")
    assert rl("start_rankings: true") != rl("")
    with pytest.raises(ConfigError, match="start_rankings must be true or false"):
        rl("start_rankings: 1")


def test_a_phase_setting_added_later_counts_only_when_set(tmp_path):
    def train(extra):
        text = BASE.replace("learning_rate: 1e-3", f"learning_rate: 1e-3{extra}")
        config = load_config(_write(tmp_path, text))
        return fingerprint(config, config.runs[1])

    assert train(", clipnorm: 0") == train("") == train(", clipnorm: 0.0")
    assert train(", clipnorm: 1.0") != train("")


def test_exact_resume_changes_every_runs_fingerprint_only_when_set(tmp_path):
    def prints(extra):
        config = load_config(_write(tmp_path, BASE.replace("model: lenet5", f"model: lenet5{extra}")))
        return [fingerprint(config, run) for run in config.runs]

    plain = prints("")
    assert prints("\nexact_resume: false") == plain  # the results saved before it stay valid
    exact = prints("\nexact_resume: true")
    assert all(a != b for a, b in zip(exact, plain))  # dropout draws another stream
    with pytest.raises(ConfigError, match="exact_resume must be true or false"):
        prints("\nexact_resume: yes please")


@pytest.mark.parametrize("edit, message", [
    (("model: lenet5", "model: lenet5\nmodle_args: {}"), "unknown key 'modle_args'. Did you mean 'model_args'"),
    (("epochs: 2,", "epoch: 2,"), "budgets.cpu.train: unknown key 'epoch'"),
    (("sparsity: [0.8, 0.9]", "sparsity: 80"), r"sparsity must be a fraction in \(0, 1\)"),
    (("method: tfmot_gmp", "method: tfmot_gpm"), "unknown method 'tfmot_gpm'"),
    (("    sparsity: [0.8, 0.9]\n", ""), "method 'tfmot_gmp' needs 'sparsity'"),
    (("learning_rate: 1e-3", "learning_rate: fast"), "learning_rate must be a number"),
    (("learning_rate: 1e-3", "learning_rate: 1e-3, weight_decay: 0.1"), "adam does not use weight_decay"),
    (("learning_rate: 1e-3", "learning_rate: 1e-3, keep_best: yes please"), "keep_best must be true or false"),
    (("learning_rate: 1e-3", "learning_rate: 1e-3, clipnorm: -1"), r"train: clipnorm must be a number >= 0"),
    (("model: lenet5", "model: lenet6"), "unknown model 'lenet6'"),
    (("model: lenet5", "model: lenet5\nmodel_args: {depth: 3}"), "no argument.*depth"),
    (("sparsity: [0.8, 0.9]", "sparsity: 0.8\n    frequency: 0"), "frequency must be a whole number >= 1, got 0"),
    (("sparsity: [0.8, 0.9]", "sparsity: 0.8\n    begin_fraction: 0.8"), "begin_fraction < end_fraction"),
    (("finetune: {epochs: 1}", "finetune: {epochs: 1}\n    data: {padding: pre}"),
     r"budgets.cpu.data: padding='pre' is for text, and 'mnist' is images"),
    (("learning_rate: 1e-3", "learning_rate: 1e-3, distill: 0.5"),
     "budgets.cpu.train: distill learns from the trained dense baseline, which this phase trains"),
    (("finetune: {epochs: 1}", "finetune: {epochs: 1, distill: 1.5}"), r"finetune: distill must be a number in \[0, 1\]"),
    (("finetune: {epochs: 1}", "finetune: {epochs: 1, distill: 0.5, temperature: 0}"),
     "finetune: temperature must be a number > 0"),
    (("finetune: {epochs: 1}", "finetune: {epochs: 1, distill: 0.5, temperature: 2}"), None),
    (("method: tfmot_gmp", "method: adaptive"), None),
    (("dataset: mnist\n", ""), "missing required key 'dataset'"),
    (("sparsity: [0.8, 0.9]", "sparsity: []"), r"\(tfmot_gmp\): sparsity lists no value"),
    (("model: lenet5", "model: lenet5\nseed: true"), "seed must be an integer from 0 to 2\\*\\*32 - 1, got True"),
    (("model: lenet5", "model: lenet5\nseed: -1"), "seed must be an integer from 0 to 2\\*\\*32 - 1, got -1"),
    (("epochs: 2,", "epochs: true,"), "epochs must be a non-negative integer, got True"),
])
def test_mistakes_are_named_with_file_and_key(tmp_path, edit, message):
    path = _write(tmp_path, BASE.replace(*edit))
    if message is None:  # a correct edit, for contrast
        load_config(path)
        return
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("setting, message", [
    ("scope: layers", r"scope=\) must be one of global, layer"),
    ("importance: hessian", "unknown importance 'hessian'"),
    ("importance: fisher", "'fisher' scores layers \\(bit allocation\\); unstructured pruning takes magnitude, taylor"),
    ("mode: strict", r"mode=\) must be one of target, guard"),
    ("every: 0", r"every=\) must be a whole number >= 1"),
    ("monitor_mode: up", "mode must be 'auto', 'max' or 'min'"),
    ("start: pretrained", "start must be 'baseline' or 'scratch'"),
])
def test_adaptive_settings_are_checked_before_anything_trains(tmp_path, setting, message):
    text = BASE.replace("method: tfmot_gmp\n    sparsity: [0.8, 0.9]",
                        f"method: adaptive\n    sparsity: 0.8\n    {setting}")
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text))


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

    root = Path(__file__).parents[1]
    configs = [*sorted((root / "experiments").glob("*.yaml")), root / "kerasprune" / "experiment" / "demo.yaml"]
    assert len(configs) > 1
    for path in configs:
        for budget in yaml.safe_load(path.read_text())["budgets"]:
            load_config(path, budget)


def test_a_budget_can_tailor_method_settings(tmp_path):
    text = BASE.replace("    finetune: {epochs: 1}", "    finetune: {epochs: 1}\n    method_args: {tfmot_gmp: {frequency: 7}}")
    config = load_config(_write(tmp_path, text))
    assert {r.params.get("frequency") for r in config.runs if r.method == "tfmot_gmp"} == {7}
    with pytest.raises(ConfigError, match="method_args.tfmot_gmp: unknown key 'freq'"):
        load_config(_write(tmp_path, text.replace("frequency: 7", "freq: 7")))
    swept = text.replace("sparsity: [0.8, 0.9]", "sparsity: [0.8, 0.9]\n    frequency: [5, 9]")
    with pytest.raises(ConfigError, match=r"methods\[0\] \(tfmot_gmp\) and the budget's "
                                          "method_args.tfmot_gmp both set frequency"):
        load_config(_write(tmp_path, swept))  # the sweep would silently become frequency 7


SWEEP = BASE.replace("    sparsity: [0.8, 0.9]\n", """    sparsity: [0.8, 0.9]
  - method: tfmot_gmp
    tag: recipe
    sparsity: 0.9
    batch_size: 64
    learning_rate: 1e-3
    schedule: constant
""")


def test_a_tagged_run_trains_with_its_own_settings_and_leaves_its_siblings_names(tmp_path):
    config = load_config(_write(tmp_path, SWEEP))
    assert [r.run_id for r in config.runs] == ["dense", "tfmot_gmp_sparsity-0.8", "tfmot_gmp_sparsity-0.9",
                                               "tfmot_gmp-recipe_sparsity-0.9"]
    recipe = config.runs[-1]
    assert recipe.training == {"batch_size": 64, "learning_rate": 0.001, "schedule": "constant"}
    assert recipe.params == {"sparsity": 0.9} and recipe.settings["batch_size"] == 64
    plain = load_config(_write(tmp_path, BASE))
    assert fingerprint(config, config.runs[2]) == fingerprint(plain, plain.runs[2])  # results kept
    assert fingerprint(config, recipe) != fingerprint(config, config.runs[2])


def test_a_run_trains_with_its_own_settings_for_the_budgets_epochs(tmp_path):
    config = load_config(_write(tmp_path, SWEEP))
    budget = config.budget.for_run(config.runs[-1].training)
    spec = budget.finetune
    assert (spec.learning_rate, spec.schedule, spec.epochs) == (0.001, "constant", 1)
    assert budget.train.epochs == 2 and budget.data["batch_size"] == 64
    assert config.budget.for_run({}) is config.budget


@pytest.mark.parametrize("edit, message", [
    (("    schedule: constant\n", "    epochs: 5\n"), "cannot set its own epochs or keep_best"),
    (("    schedule: constant\n", "    keep_best: true\n"), "cannot set its own epochs or keep_best"),
    (("tag: recipe", "tag: my recipe"), "tag must be letters, digits and dots"),
    (("batch_size: 64", "batch_size: 0"), r"methods\[1\] \(tfmot_gmp\): batch_size must be a whole number >= 1"),
    (("schedule: constant", "schedule: linear"), "schedule 'linear' is not one of"),
    (("learning_rate: 1e-3", "learning_rate: -1"), "learning_rate must be a number > 0"),
    (("learning_rate: 1e-3", "learning_rate: true"), "learning_rate must be a number > 0, got True"),
    (("    schedule: constant\n", "    optimizer: sgd\n    momentum: -0.5\n"), "momentum must be a number in"),
    (("  - method: tfmot_gmp\n    tag", "  - {method: dense, tag: again}\n  - method: tfmot_gmp\n    tag"),
     "the baseline cannot be tagged"),
    (("  - method: tfmot_gmp\n    tag", "  - method: dense\n    learning_rate: 0.1\n  - method: tfmot_gmp\n    tag"),
     "the baseline trains with the budget's train phase; set learning_rate there"),
])
def test_a_runs_own_training_settings_are_checked_before_anything_trains(tmp_path, edit, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, SWEEP.replace(*edit)))


def test_a_runs_own_settings_are_checked_against_the_phase_it_trains_in(tmp_path):
    text = SWEEP.replace("train: {epochs: 2, learning_rate: 1e-3}",
                         "train: {epochs: 2, optimizer: adamw, weight_decay: 0.01}")
    text = text.replace("    schedule: constant\n", "    optimizer: adam\n")  # fine-tunes: adam is valid
    assert load_config(_write(tmp_path, text)).runs[-1].training["optimizer"] == "adam"
    with pytest.raises(ConfigError, match="adam does not use weight_decay"):  # trains from scratch
        load_config(_write(tmp_path, text.replace("    optimizer: adam\n", "    optimizer: adam\n    start: scratch\n")))
