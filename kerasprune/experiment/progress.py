"""What a long run shows while it trains: one line per epoch, and step times.

Keras' own progress bars flood log files; the harness and the studies print these.
"""
from __future__ import annotations

import statistics
import sys
import time
from typing import TextIO

from ..backend import keras


class StepTimer(keras.callbacks.Callback):
    """Wall time of every training step (ms), for side-by-side step-time ratios.

    The first ``skip`` steps of each ``fit`` (tracing, warm-up) are left out; the median
    is robust to the occasional slow step of a shared machine.  With ``cycle`` a step runs
    from one batch's begin to the next's, so every callback's work between them (a mask
    update at a batch's end) is in it; the last batch of a ``fit`` is then not timed.
    """

    def __init__(self, skip: int = 5, cycle: bool = False) -> None:
        super().__init__()
        self.skip, self.cycle = skip, cycle
        self.times_ms: list[float] = []
        self._seen = 0
        self._start: float | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._seen, self._start = 0, None

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        now = time.perf_counter()
        if self.cycle and self._start is not None:
            self._record(now)
        self._start = now

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if not self.cycle:
            self._record(time.perf_counter())

    def _record(self, now: float) -> None:
        self._seen += 1
        if self._seen > self.skip:
            self.times_ms.append((now - self._start) * 1000.0)

    @property
    def median_ms(self) -> float | None:
        return float(statistics.median(self.times_ms)) if self.times_ms else None


class EpochProgress(keras.callbacks.Callback):
    """One line per epoch with the run's label, key metrics, epoch time and an ETA.

    Keras' own progress bars flood log files; this prints what a long run needs to be
    followed from a terminal or a CI log.
    """

    def __init__(self, label: str, stream: TextIO | None = None,
                 keys: tuple[str, ...] = ("loss", "accuracy", "val_accuracy", "sparsity")) -> None:
        super().__init__()
        self.label = label
        self.stream = stream or sys.stdout
        self.keys = keys
        self._epoch_start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        total = self.params.get("epochs") or epoch + 1
        took = time.perf_counter() - self._epoch_start
        eta = took * (total - epoch - 1)
        shown = "  ".join(f"{k} {logs[k]:.4f}" for k in self.keys if k in logs)
        print(f"  {self.label} epoch {epoch + 1}/{total}  {shown}  {took:.1f}s  eta {eta:.0f}s",
              file=self.stream, flush=True)
