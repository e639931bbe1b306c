"""Keras callbacks that observe training: sparsity per epoch and a compact progress line."""
from __future__ import annotations

import sys
import time
from typing import TextIO

from . import metrics
from .backend import keras


class SparsityHistory(keras.callbacks.Callback):
    """Adds the model's global sparsity to the epoch logs, so History and TensorBoard get it."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["sparsity"] = metrics.global_sparsity(self.model)


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
