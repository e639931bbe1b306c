"""The RL agent in an experiment: at the MACs budget of the structured runs it is compared
with, its plans and search cost reported, its widths plotted against theirs."""
from __future__ import annotations

import pytest

from kerasprune import ConfigError
from kerasprune.experiment import agent_report

from test_experiment import _run, _write_config

CONFIG = """
experiment: agent
dataset: mnist
model: lenet5
model_args: {width: 0.5}
methods:
  - method: dense
  - {method: structured, tag: uniform, macs: 0.5}
  - {method: structured, tag: global, macs: 0.5, scope: global}
  - {method: rl, macs: 0.5, intervals: 2, episodes: 4, eval_batches: 1, confirm_batches: 0}
budgets:
  cpu:
    data: {batch_size: 4, max_train_examples: 32}
    train: {epochs: 1}
    finetune: {epochs: 2}
"""


def test_rl_and_the_rankings_it_is_judged_against_meet_the_same_macs_budget(tmp_path, mock_tfds):
    results = _run(_write_config(tmp_path, "agent", CONFIG), tmp_path)
    runs = {r["run"]: r for r in results["runs"]}
    dense = runs["dense"]
    for name in ("structured-uniform", "structured-global", "rl"):
        assert runs[name]["macs"] <= 0.5 * dense["macs"], name
    rl = runs["rl"]
    assert [p["budget"] for p in rl["rl_plans"]] == pytest.approx([0.75, 0.5])
    assert len(rl["rl_episodes"]) == 2 * 5  # 4 exploring episodes and a greedy one per interval
    assert 0 < rl["agent_share"] < 1 and rl["agent_seconds"] > 0
    assert set(rl["widths"]) == set(runs["structured-uniform"]["widths"])
    report = (tmp_path / "experiments" / "results" / "agent.md").read_text()
    assert "## RL agent" in report and "share of the run's training time" in report
    for plot in ("rl_reward.png", "rl_widths.png"):
        assert (tmp_path / "experiments" / "results" / "agent" / plot).is_file()


@pytest.mark.parametrize("entry, message", [
    ("{method: rl, intervals: 2}", "needs 'macs'"),
    ("{method: rl, macs: 1.5, intervals: 2}", "macs"),
    ("{method: rl, macs: 0.5, intervals: 2, importance: taylor}", "structured pruning takes"),
    ("{method: rl, macs: 0.5}", "3 intervals of 1 epochs, more than the finetune phase's 2"),
    ("{method: rl, macs: 0.5, intervals: 2, confirm_batches: -1}", "confirm_batches"),
])
def test_bad_rl_settings_are_refused_before_anything_trains(tmp_path, mock_tfds, entry, message):
    config = _write_config(tmp_path, "agent", CONFIG.replace(
        "{method: rl, macs: 0.5, intervals: 2, episodes: 4, eval_batches: 1, confirm_batches: 0}", entry))
    with pytest.raises(ConfigError, match=message):
        _run(config, tmp_path)
    assert not (tmp_path / "out").exists()


def test_rl_refuses_a_finetune_phase_that_keeps_its_best_epoch(tmp_path, mock_tfds):
    config = _write_config(tmp_path, "agent", CONFIG.replace("finetune: {epochs: 2}",
                                                            "finetune: {epochs: 2, keep_best: true}"))
    with pytest.raises(ConfigError, match="keep_best could hand back an epoch before the last cut"):
        _run(config, tmp_path)


def test_the_report_says_when_a_search_kept_a_global_rankings_plan():
    def finalist(ranking, confirmed, kept, uniform=False):
        return {"ratios": {"a": 0.5}, "reward": 0.9, "confirmed": confirmed, "uniform": uniform,
                "previous": False, "ranking": ranking, "kept": kept}

    plan = {"interval": 0, "epoch": 0, "budget": 0.5, "macs": 0.49, "accuracy": 0.9, "seconds": 1.0,
            "ratios": {"a": 0.5}}
    run = {"run": "rl", "agent_seconds": 1.0, "agent_share": 0.1, "rl_episodes": [], "rl_plans": [
        {**plan, "finalists": [finalist("activation_taylor", 0.95, True), finalist(None, 0.93, False),
                               finalist(None, 0.90, False, uniform=True)]},
        {**plan, "interval": 1, "finalists": [finalist(None, 0.96, True), finalist(None, 0.90, False, True)]}]}
    rows = [line for line in agent_report.markdown([run]) if line.startswith("| `rl` |")]
    assert "0.9500 vs 0.9000 (2; kept the global activation_taylor ranking's plan)" in rows[0]
    assert "0.9600 vs 0.9000 (1) |" in rows[1]
