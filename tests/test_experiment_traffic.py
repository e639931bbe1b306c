"""A config's traffic block: the baseline served through all, narrowed and restored traffic."""
from __future__ import annotations

import pytest

from kerasprune.errors import ConfigError
from kerasprune.experiment.config import load_config
from test_experiment import _run, _write_config

CONFIG = """
experiment: traffic
dataset: mnist
model: lenet_300_100
model_args: {width: 0.1}
methods:
  - method: dense
traffic:
  narrow: {labels: [0, 1, 2, 3, 4]}
  batch_size: 4
  phases: {all: 3, narrowed: 6, restored: 3}
  eval_examples: 16
  bench_rounds: 2
  servers:
    - {tag: eager, prune_below: 0.5, reactivate_above: 0.8, probe_every: 2, decide_every: 1, warmup: 1}
budgets:
  cpu:
    data: {batch_size: 8, max_train_examples: 32}
    train: {epochs: 1}
"""
LABELS = "{labels: [0, 1, 2, 3, 4]}"


def test_a_traffic_scenario_records_each_phase_the_models_side_by_side_and_a_timeline(tmp_path, mock_tfds):
    results = _run(_write_config(tmp_path, "traffic", CONFIG), tmp_path)
    section = results["traffic"]
    server = section["servers"][0]
    assert [row["phase"] for row in server["timeline"]] == ["all"] * 3 + ["narrowed"] * 6 + ["restored"] * 3
    assert set(server["phases"]) == {"all", "narrowed", "restored"}
    assert all(0 <= p["served"]["accuracy"] <= 1 and p["cpu_cores_busy"] > 0 for p in server["phases"].values())
    assert server["compact"]["params"] <= section["dense"]["params"]
    assert server["static"]["params"] == server["compact"]["params"]  # the same widths, chosen offline
    for name in ("dense", "compact-eager", "static-eager"):
        assert set(section["benchmark"][name]) == {"tf-cpu", "tflite@1"}
    assert section["benchmark"]["dense"]["tflite@1"]["ratio"] == pytest.approx(1.0)
    assert section["monitor_overhead"]["monitored_ms"] > 0
    report = (tmp_path / "experiments" / "results" / "traffic.md").read_text()
    assert "## Serving under changing traffic" in report
    assert (tmp_path / "experiments" / "results" / "traffic" / "traffic_timeline.png").is_file()


@pytest.mark.parametrize("edit, message", [
    (("  static: apoz\n", "  speed: 2\n"), "unknown key"),
    ((LABELS, "{digits: [1]}"), "narrow must be"),
    (("restored: 3}", "later: 3}"), "phases must give"),
    ((LABELS, "{length: [1, '80']}"), r"narrow.length\[1\] \(tokens\) must be a whole number"),
    ((LABELS, "{length: [null, 80]}"), r"narrow.length\[0\] \(tokens\) must be a whole number"),
    ((LABELS, "{length: [-1, 80]}"), r"narrow.length\[0\] \(tokens\) must be a whole number >= 0"),
    ((LABELS, "{length: [80, 10]}"), "min <= max"),
    (("prune_below: 0.5, reactivate_above: 0.8", "prune_below: 0.5, reactivate_above: 0.4"),
     "must be above prune_below"),
    (("warmup: 1}", "warmup: 1, patience: 3}"), "unknown setting"),
])
def test_bad_traffic_blocks_are_refused_when_the_config_is_read(tmp_path, edit, message):
    text = CONFIG.replace("  eval_examples: 16\n", "  eval_examples: 16\n  static: apoz\n")
    path = _write_config(tmp_path, "traffic", text.replace(*edit))
    with pytest.raises(ConfigError, match=message):
        load_config(path)
