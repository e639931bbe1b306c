"""Timing taken the same way for every model: warm-up, calibrated blocks, interleaved rounds.

A block repeats one inference until it has run ``min_block_seconds``; its median is one
observation (robust to interference shorter than half a block, hence blocks of 0.25 s).  Models compared side by side take turns block by block (the order rotates
each round), so a slow spell of a shared machine hits all of them alike, and each ratio
to the baseline is the median of per-round ratios.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager as ContextManager
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import numpy as np

#: runs a block of ``n`` inferences and returns the per-inference milliseconds
Block = Callable[[int], np.ndarray]


@dataclass
class Latency:
    """Latency statistics in milliseconds for one model on one target and batch size."""

    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    cv: float  # standard deviation / mean of the block medians: the figure's stability
    cv_robust: float  # 1.4826 * MAD / median of the block medians: the same, blind to one bad block
    runs: int
    blocks: int
    batch: int = 1
    rerun_rounds: int = 0  # rounds run again because the host disturbed them

    @property
    def throughput(self) -> float:
        """Examples per second at this batch size."""
        return 1000.0 * self.batch / self.median_ms if self.median_ms > 0 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "throughput_per_s": round(self.throughput, 2)}


def loop(invoke: Callable[[], object]) -> Block:
    """A block that times ``invoke()`` one call at a time."""

    def block(n: int) -> np.ndarray:
        times = np.empty(n)
        for i in range(n):
            start = time.perf_counter()
            invoke()
            times[i] = time.perf_counter() - start
        return times * 1000.0

    return block


def calibrate(block: Block, *, warmup: int, min_block_seconds: float, min_runs: int = 5) -> int:
    """Warm up, then pick how many runs make a block last ``min_block_seconds``."""
    first = block(max(1, warmup))
    per_run_s = float(np.median(first)) / 1000.0
    return max(min_runs, int(np.ceil(min_block_seconds / max(per_run_s, 1e-7))))


def summarize(samples: list[np.ndarray], batch: int = 1) -> Latency:
    """Statistics over blocks of per-inference milliseconds."""
    times = np.concatenate(samples)
    medians = np.array([np.median(s) for s in samples])
    return Latency(
        median_ms=float(np.median(times)),
        p90_ms=float(np.percentile(times, 90)),
        p99_ms=float(np.percentile(times, 99)),
        mean_ms=float(np.mean(times)),
        cv=float(np.std(medians) / np.mean(medians)) if np.mean(medians) > 0 else 0.0,
        cv_robust=float(1.4826 * np.median(np.abs(medians - np.median(medians))) / np.median(medians))
        if np.median(medians) > 0 else 0.0,
        runs=int(times.size),
        blocks=len(samples),
        batch=batch,
    )


def interleaved(
    blocks: Mapping[str, Block],
    *,
    rounds: int = 7,
    warmup: int = 10,
    min_block_seconds: float = 0.25,
    batch: int = 1,
    meter: Callable[[str], ContextManager | None] | None = None,
) -> tuple[dict[str, Latency], dict[str, list[float]]]:
    """Time every block in turn for ``rounds`` rounds.

    A round in which some model's block median lies more than 4 robust standard
    deviations and 5% from that model's median was disturbed (a host hiccup longer than
    half a block) and is run again, at most ``rounds`` times in all; the count is in
    each Latency's ``rerun_rounds``.  ``meter(name)`` may return a context manager wrapped
    around each of that name's blocks (energy readings).  Returns the statistics per name
    and each name's per-round medians.
    """
    names = list(blocks)
    runs = {n: calibrate(blocks[n], warmup=warmup, min_block_seconds=min_block_seconds)
            for n in names}

    def run_round(r: int) -> dict[str, np.ndarray]:
        out = {}
        for n in names[r % len(names):] + names[:r % len(names)]:
            with (meter and meter(n)) or nullcontext():
                out[n] = blocks[n](runs[n])
        return out

    taken = [run_round(r) for r in range(rounds)]
    reruns = 0
    while reruns < rounds and (bad := _disturbed(taken)):
        for r in sorted(bad)[: rounds - reruns]:
            taken[r] = run_round(r)
            reruns += 1
    stats = {}
    for n in names:
        stats[n] = summarize([t[n] for t in taken], batch)
        stats[n].rerun_rounds = reruns
    return stats, {n: [float(np.median(t[n])) for t in taken] for n in names}


def _disturbed(taken: list[dict[str, np.ndarray]]) -> set[int]:
    bad: set[int] = set()
    for n in taken[0]:
        medians = np.array([np.median(t[n]) for t in taken])
        mid = np.median(medians)
        limit = max(4 * 1.4826 * np.median(np.abs(medians - mid)), 0.05 * mid)
        bad |= {i for i, m in enumerate(medians) if abs(m - mid) > limit}
    return bad


def ratio(round_medians: list[float], baseline_medians: list[float]) -> float:
    """Median of the per-round ratios: robust to the machine drifting between rounds."""
    pairs = [a / b for a, b in zip(round_medians, baseline_medians) if b > 0]
    return float(np.median(pairs)) if pairs else float("nan")


class CpuSteal:
    """Share of CPU time the hypervisor gave to other machines while a block ran (Linux).

    A shared virtual machine's noise has a name: steal time in ``/proc/stat``.  Recording
    it next to the CV tells a noisy host from a noisy model.  None where not exposed.
    """

    def __init__(self) -> None:
        self.fraction: float | None = None
        self._start: list[int] | None = None

    @staticmethod
    def _read() -> list[int] | None:
        try:
            with open("/proc/stat") as f:
                fields = f.readline().split()[1:]
            return [int(v) for v in fields]
        except (OSError, ValueError):
            return None

    def __enter__(self) -> CpuSteal:
        self._start = self._read()
        return self

    def __exit__(self, *exc) -> None:
        end = self._read()
        if self._start is None or end is None or len(end) < 8:
            return
        delta = [b - a for a, b in zip(self._start, end)]
        total = sum(delta[:8])  # user nice system idle iowait irq softirq steal
        self.fraction = round(delta[7] / total, 4) if total > 0 else 0.0
