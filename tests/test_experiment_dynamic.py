"""The dynamic sparse methods in an experiment: sparse from the first step, at the
baseline's epochs (or a named multiple), their training FLOPs and mask turnover reported."""
from __future__ import annotations

import pytest

from kerasprune import ConfigError

from test_experiment import _run, _write_config

CONFIG = """
experiment: dyn
dataset: mnist
model: lenet_300_100
model_args: {width: 0.25}
methods:
  - method: dense
  - {method: static, sparsity: 0.8}
  - {method: set, sparsity: 0.8}
  - {method: rigl, sparsity: 0.8}
  - {method: rigl, tag: 2x, sparsity: 0.8, epochs_factor: 2}
budgets:
  cpu:
    data: {batch_size: 4, max_train_examples: 32}
    train: {epochs: 2}
    finetune: {epochs: 1}
    method_args:
      rigl: {update_every: 2}
      set: {update_every: 2}
"""


def test_dynamic_runs_train_sparse_from_scratch_and_count_their_training_flops(tmp_path, mock_tfds):
    results = _run(_write_config(tmp_path, "dyn", CONFIG), tmp_path)
    runs = {r["run"]: r for r in results["runs"]}
    dense, static, set_, rigl, longer = (runs[k] for k in (
        "dense", "static_sparsity-0.8", "set_sparsity-0.8", "rigl_sparsity-0.8", "rigl-2x_sparsity-0.8"))
    for run in (static, set_, rigl, longer):
        assert run["sparsity"] == pytest.approx(0.8, abs=0.01)
        # sparse from epoch 1 (above 0.8 while regrown weights are still at zero)
        assert 0.8 - 0.01 <= run["history"]["sparsity"][0] <= 0.85
    assert (static["epochs"], rigl["epochs"], longer["epochs"]) == (2, 2, 4)
    assert not static["dst_updates"] and rigl["dst_updates"] and set_["dst_updates"]
    # 3 FLOPs-passes of the sparse MACs per example; RigL adds the dense gradient of its updates
    assert static["train_flops"] == 6 * static["macs_effective"] * 32 * 2
    assert static["train_flops"] < rigl["train_flops"] < dense["train_flops"]
    assert dense["train_flops"] == 6 * dense["macs"] * 32 * 2
    assert (tmp_path / "experiments" / "results" / "dyn" / "mask_turnover.png").is_file()
    assert "train FLOPs" in (tmp_path / "experiments" / "results" / "dyn.md").read_text()


@pytest.mark.parametrize("entry, message", [
    ("{method: rigl, sparsity: 0.8, distribution: random}", r"distribution=\) must be one of"),
    ("{method: set, sparsity: 0.8, epochs_factor: 0}", "epochs_factor"),
    ("{method: static}", "needs 'sparsity'"),
    ("{method: rigl, sparsity: 0.99, min_density: 0.05}", "cannot be met"),
])
def test_bad_dynamic_settings_are_refused_before_anything_trains(tmp_path, entry, message):
    config = _write_config(tmp_path, "dyn", CONFIG.replace("{method: static, sparsity: 0.8}", entry))
    with pytest.raises(ConfigError, match=message):
        _run(config, tmp_path)
    assert not (tmp_path / "out").exists()
