"""Inference timing, taken the same way for every method so figures compare.

Batch-1 latency on the LiteRT interpreter (XNNPACK, the mobile proxy): warm-up, then
repeated invocations, reported as median and tail percentiles with the coefficient of
variation, so a noisy measurement is visible as such.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

import numpy as np

from .export import interpreter


@dataclass
class Latency:
    """Batch-1 latency statistics in milliseconds."""

    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    cv: float  # standard deviation / mean of the per-repeat medians
    runs: int
    threads: int

    def as_dict(self) -> dict:
        return asdict(self)


def tflite_latency(
    model: bytes | str | os.PathLike,
    *,
    threads: int = 1,
    warmup: int = 20,
    runs: int = 200,
    repeats: int = 5,
    seed: int = 0,
) -> Latency:
    """Time ``invoke()`` of a TFLite model on one random example.

    ``runs`` invocations are split into ``repeats`` blocks; the CV of the block medians
    says how stable the figure is on this (shared, noisy) machine.
    """
    interp = interpreter(model, num_threads=threads)
    detail = interp.get_input_details()[0]
    shape = [1, *detail["shape"][1:]]
    if list(detail["shape"]) != shape:
        interp.resize_tensor_input(detail["index"], shape)
        interp.allocate_tensors()
    rng = np.random.default_rng(seed)
    if np.issubdtype(detail["dtype"], np.integer):
        x = rng.integers(0, 2, size=shape).astype(detail["dtype"])
    else:
        x = rng.standard_normal(shape).astype(detail["dtype"])
    interp.set_tensor(detail["index"], x)
    for _ in range(warmup):
        interp.invoke()
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        interp.invoke()
        times[i] = time.perf_counter() - start
    times *= 1000.0
    blocks = np.array([np.median(b) for b in np.array_split(times, max(1, repeats))])
    return Latency(
        median_ms=float(np.median(times)),
        p90_ms=float(np.percentile(times, 90)),
        p99_ms=float(np.percentile(times, 99)),
        mean_ms=float(np.mean(times)),
        cv=float(np.std(blocks) / np.mean(blocks)) if np.mean(blocks) > 0 else 0.0,
        runs=runs,
        threads=threads,
    )
