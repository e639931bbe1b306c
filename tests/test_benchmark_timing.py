"""Timing statistics and interleaving, on blocks with known times (no clock involved)."""
from __future__ import annotations

import numpy as np
import pytest

from kerasprune.benchmark.timing import calibrate, interleaved, ratio, summarize


def test_statistics_over_blocks():
    blocks = [np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0])]
    lat = summarize(blocks, batch=4)
    assert lat.median_ms == 2.0 and lat.runs == 9 and lat.blocks == 3
    assert lat.p90_ms == pytest.approx(np.percentile(np.concatenate(blocks), 90))
    medians = np.array([2.0, 2.0, 4.0])
    assert lat.cv == pytest.approx(medians.std() / medians.mean())
    assert lat.cv_robust == 0.0  # one disturbed block out of three does not move it
    assert lat.throughput == pytest.approx(4 * 1000 / 2.0)


def test_identical_blocks_have_zero_cv():
    assert summarize([np.full(10, 0.5)] * 5).cv == 0.0


def test_calibration_sizes_blocks_by_the_warmup_median():
    # 2 ms per run, blocks of at least 0.1 s -> 50 runs
    assert calibrate(lambda n: np.full(n, 2.0), warmup=3, min_block_seconds=0.1) == 50
    assert calibrate(lambda n: np.full(n, 500.0), warmup=3, min_block_seconds=0.1) == 5  # floor


def test_models_take_turns_in_rotating_order_and_ratios_are_per_round():
    order: list[str] = []

    def fake(name: str, ms: float):
        def block(n: int) -> np.ndarray:
            order.append(name)
            return np.full(n, ms)
        return block

    stats, medians = interleaved({"a": fake("a", 2.0), "b": fake("b", 1.0)}, rounds=4,
                                 warmup=1, min_block_seconds=0.01)
    timed = order[2:]  # after one calibration call each
    assert timed == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert stats["b"].median_ms == 1.0 and medians["b"] == [1.0] * 4
    assert ratio(medians["b"], medians["a"]) == 0.5


def test_a_drifting_machine_does_not_move_the_ratio():
    # the machine slows down 3x in round 3; both models are hit, the ratio holds
    a, b = [1.0, 1.0, 3.0, 1.0], [0.5, 0.5, 1.5, 0.5]
    assert ratio(b, a) == 0.5


def test_cpu_steal_is_a_share_of_the_cpu_time(monkeypatch):
    from kerasprune.benchmark import timing

    readings = iter([[100, 0, 50, 800, 0, 0, 0, 50, 0, 0], [200, 0, 100, 1500, 0, 0, 0, 200, 0, 0]])
    monkeypatch.setattr(timing.CpuSteal, "_read", staticmethod(lambda: next(readings)))
    with timing.CpuSteal() as steal:
        pass
    assert steal.fraction == 0.15  # 150 of 1000 ticks


def test_a_disturbed_round_is_run_again_and_counted():
    calls = {"a": 0, "b": 0}

    def block(name: str, slow_call: int):
        def run(n: int) -> np.ndarray:
            calls[name] += 1
            return np.full(n, 3.0 if calls[name] == slow_call else 1.0)
        return run

    # calls 1 are calibration; b's 3rd call (round 2) hits a host hiccup
    stats, medians = interleaved({"a": block("a", 0), "b": block("b", 3)}, rounds=5, warmup=1,
                                 min_block_seconds=0.001)
    assert medians["b"] == [1.0] * 5 and stats["b"].cv == 0.0
    assert stats["a"].rerun_rounds == stats["b"].rerun_rounds == 1
    assert calls["a"] == 1 + 5 + 1  # the whole round is rerun, so ratios stay paired


def test_ordinary_spread_is_not_rerun():
    values = iter(np.tile([1.0, 1.03, 0.98, 1.01, 0.99], 10))
    stats, _ = interleaved({"a": lambda n: np.full(n, next(values))}, rounds=5, warmup=1,
                           min_block_seconds=0.001)
    assert stats["a"].rerun_rounds == 0 and stats["a"].cv > 0
