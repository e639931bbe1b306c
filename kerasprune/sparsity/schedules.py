"""Feedback-driven sparsity schedules: step up, hold, roll back, by validation feedback.

tfmot's schedules are open-loop (sparsity is a function of the step alone).  The
:class:`FeedbackSchedule` here is a small state machine driven once per epoch by the
monitored validation metric:

* **step** up by ``step`` (to at most ``final``) every ``every`` epochs, or early, after
  at least one epoch, when the metric is within ``early_margin`` of the reference;
* **hold** (do not step) while the metric is more than ``tolerance`` below the reference,
  for up to ``recovery_epochs`` epochs;
* **roll back** to the previous level (the previous masks) when it has not recovered by
  then, and retry later with half the step.

With ``mode="guard"`` the accuracy bound wins: pruning stops where the step size would
fall below ``min_step``.  With ``mode="target"`` the final sparsity wins: sparsity never
falls behind a floor that rises linearly from ``initial`` to ``final`` by the end of the
first ``finish_fraction`` of the epochs (tfmot's GMP ends its ramp the same way), so the
feedback can only run ahead of it, hold or roll back above it, and the remaining epochs
recover at the final level.

The state is a fixed-length float vector (``as_vector``/``from_vector``) so it can live in
model weights and survive ``BackupAndRestore`` and ``ModelCheckpoint``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Literal

from ..checks import choice, number
from ..errors import ConfigError
from .state import FloatFields

Action = Literal["none", "step", "hold", "rollback", "done"]


def higher_is_better(monitor: str, mode: str = "auto") -> bool:
    """``max``/``min``, or ``auto`` as Keras' EarlyStopping does: accuracies and AUCs up, the rest down."""
    if mode not in ("auto", "max", "min"):
        raise ConfigError(f"mode must be 'auto', 'max' or 'min', got {mode!r}.")
    if mode != "auto":
        return mode == "max"
    return any(key in monitor for key in ("acc", "auc", "precision", "recall", "f1"))
RAMPS = ("geometric", "linear")


def ramp_level(start: float, end: float, fraction: float, shape: str = "geometric") -> float:
    """The sparsity ``fraction`` of the way through a ramp from ``start`` to ``end``.

    ``geometric`` (the default): the surviving density falls geometrically, so every mask
    update removes the same share of the weights still alive.  ``linear`` in sparsity
    cuts the last survivors fastest instead (50% -> 98% in 20 updates halves the density
    in the last one, right before validation measures the step); on MNIST LeNet-5 at 98%
    it left 0.50 validation accuracy after the ramp against 0.94 for geometric.
    """
    choice(shape, "ramp", RAMPS)
    fraction = min(1.0, max(0.0, fraction))
    if shape == "linear" or end <= start:
        return start + (end - start) * fraction
    return 1.0 - (1.0 - start) * ((1.0 - end) / (1.0 - start)) ** fraction


ACTION_CODES = {"none": 0, "step": 1, "hold": 2, "rollback": 3, "done": 4}


@dataclass
class FeedbackState(FloatFields):
    """Where the schedule is; every field is a float so it fits a weight vector."""

    started: float = 0.0  # 1 once the first epoch has been seen
    level: float = 0.0  # current target sparsity
    previous_level: float = 0.0
    reference: float = math.nan  # the metric the drop is measured against
    epochs_since_step: float = 0.0
    held: float = 0.0  # epochs held since the last step
    step_size: float = 0.0
    finished: float = 0.0
    steps: float = 0.0
    rollbacks: float = 0.0
    # AdaptivePruning's: batches per epoch counted where Keras does not know them, so that a
    # resumed run ramps its first epoch as the unbroken run would
    epoch_length: float = 0.0


@dataclass
class Decision:
    epoch: int
    action: Action
    sparsity: float
    metric: float
    reference: float
    reason: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class FeedbackSchedule:
    """The plan's defaults: 20% -> 80%, +10% every 5 epochs, half a point of tolerance."""

    initial: float = 0.2
    final: float = 0.8
    step: float = 0.1
    every: int = 5
    tolerance: float = 0.005
    recovery_epochs: int = 2
    early_margin: float | None = None  # default: tolerance / 2
    min_step: float = 0.0125
    begin_epoch: int = 1  # epochs before the first step: the reference and Taylor scores
    mode: Literal["target", "guard"] = "target"
    finish_fraction: float = 0.7  # target mode: the floor reaches `final` by this share of epochs
    higher_is_better: bool = True  # see higher_is_better(monitor, mode)
    state: FeedbackState = field(default_factory=FeedbackState)

    def __post_init__(self) -> None:
        where = "FeedbackSchedule"
        self.initial = number(self.initial, f"{where}(initial=)", low=0.0, high=1.0, low_open=True,
                              high_open=True)
        self.final = number(self.final, f"{where}(final=)", low=self.initial, high=1.0, high_open=True)
        self.step = number(self.step, f"{where}(step=)", low=0.0, low_open=True)
        self.every = number(self.every, f"{where}(every=)", low=1, integer=True)
        self.tolerance = number(self.tolerance, f"{where}(tolerance=)", low=0.0)
        self.recovery_epochs = number(self.recovery_epochs, f"{where}(recovery_epochs=)", low=0,
                                      integer=True)
        self.min_step = number(self.min_step, f"{where}(min_step=)", low=0.0, low_open=True)
        choice(self.mode, f"{where}(mode=)", ("target", "guard"))
        self.finish_fraction = number(self.finish_fraction, f"{where}(finish_fraction=)", low=0.0,
                                      high=1.0, low_open=True)
        if not isinstance(self.begin_epoch, int) or self.begin_epoch < 1:
            raise ConfigError(f"{where}(begin_epoch=) must be a whole number >= 1, got "
                              f"{self.begin_epoch!r}: the first epoch measures the reference and "
                              "collects the first importance scores.")
        if self.early_margin is not None:
            self.early_margin = number(self.early_margin, f"{where}(early_margin=)", low=0.0)
        if self.early_margin is None:
            self.early_margin = self.tolerance / 2

    def get_config(self) -> dict:
        """The settings (not the state), as tfmot's schedules give theirs: a tuner can
        sample a schedule, store it as JSON and rebuild it with :meth:`from_config`."""
        settings = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "state"}
        return {"class_name": type(self).__name__, "config": settings}

    @classmethod
    def from_config(cls, config: dict) -> "FeedbackSchedule":
        """A schedule from :meth:`get_config`'s ``config`` (or the whole dict); fresh state."""
        settings = config.get("config", config) if "class_name" in config else config
        unknown = sorted(set(settings) - {f.name for f in fields(cls)} | ({"state"} & set(settings)))
        if unknown:
            raise ConfigError(f"FeedbackSchedule.from_config: unknown setting(s) {', '.join(unknown)}.")
        return cls(**settings)

    def _drop(self, metric: float) -> float:
        """How far the metric is below the reference (positive = worse)."""
        sign = 1.0 if self.higher_is_better else -1.0
        return sign * (self.state.reference - metric)

    def update(self, epoch: int, metric: float, total_epochs: int | None = None) -> Decision:
        """Decide at the end of ``epoch``; the caller applies the resulting ``state.level``."""
        s = self.state
        if not s.started:
            s.started, s.step_size = 1.0, self.step
        if epoch + 1 < self.begin_epoch:
            if not math.isnan(metric):
                s.reference = metric if math.isnan(s.reference) else self._better(s.reference, metric)
            return self._decide(epoch, "none", metric, "before the first step")
        if math.isnan(s.reference):
            s.reference = metric
        if s.finished:
            return self._decide(epoch, "done", metric, "schedule finished")
        floor = self._floor(epoch, total_epochs)
        forced = s.level < floor - 1e-9
        if s.steps == 0:
            return self._step_to(epoch, max(self.initial, floor), metric, "first step")

        s.epochs_since_step += 1
        drop = math.inf if math.isnan(metric) else self._drop(metric)  # NaN counts as a drop
        suffering = drop > self.tolerance
        # Target mode never rolls back below its floor: it holds there instead.
        keep = s.previous_level < floor - 1e-9
        if suffering and not forced:
            if s.held < self.recovery_epochs or keep:
                s.held += 1
                return self._decide(epoch, "hold", metric,
                                    f"{drop:.4f} below the reference (tolerance {self.tolerance})")
            return self._rollback(epoch, metric, drop)
        s.held = 0.0
        if s.level >= self.final:
            s.finished = 1.0
            return self._decide(epoch, "done", metric, "final sparsity reached and held")
        due = s.epochs_since_step >= self.every
        early = drop <= self.early_margin
        if due or early or forced:
            if forced and (suffering or not (due or early)):
                why = "forced by the deadline"
            else:
                why = "scheduled" if due else f"early: within {self.early_margin} of the reference"
            planned = s.level + s.step_size if (due or early) else floor
            return self._step_to(epoch, min(self.final, max(planned, floor)), metric, why)
        return self._decide(epoch, "none", metric, "waiting for the next step")

    def _floor(self, epoch: int, total_epochs: int | None) -> float:
        """Target mode: the least sparsity allowed after ``epoch`` (0 in guard mode)."""
        if self.mode != "target" or total_epochs is None:
            return 0.0
        first = self.begin_epoch - 1  # the epoch that ends with the first step
        # A step decided at the end of an epoch ramps in during the next one, so the last
        # decision comes one epoch before the share of epochs given by finish_fraction ends.
        last = max(first, round(self.finish_fraction * total_epochs) - 2)
        if last == first:
            return self.final
        progress = min(1.0, max(0.0, (epoch - first) / (last - first)))
        return self.initial + (self.final - self.initial) * progress

    def _better(self, a: float, b: float) -> float:
        return max(a, b) if self.higher_is_better else min(a, b)

    def _step_to(self, epoch: int, level: float, metric: float, why: str) -> Decision:
        s = self.state
        s.previous_level, s.level = s.level, round(level, 6)
        s.epochs_since_step, s.held, s.steps = 0.0, 0.0, s.steps + 1
        return self._decide(epoch, "step", metric, why)

    def _rollback(self, epoch: int, metric: float, drop: float) -> Decision:
        s = self.state
        s.level, s.rollbacks = s.previous_level, s.rollbacks + 1
        s.epochs_since_step, s.held = 0.0, 0.0
        s.step_size /= 2
        if s.step_size < self.min_step:
            if self.mode == "guard":
                s.finished = 1.0
            s.step_size = self.min_step
        return self._decide(epoch, "rollback", metric,
                            f"{drop:.4f} below the reference after {self.recovery_epochs} recovery epochs")

    def _decide(self, epoch: int, action: Action, metric: float, reason: str) -> Decision:
        return Decision(epoch, action, self.state.level, metric, self.state.reference, reason)
