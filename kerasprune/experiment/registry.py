"""The method registry: what a method is, what it may use, and how it is registered.

It stands apart from the built-in methods (:mod:`.methods`) so that the config loader can
validate names and settings against it, and new methods can register from anywhere.
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import models
from ..backend import keras
from ..data import Data
from ..errors import ConfigError
from . import training
from .spec import Budget, TrainSpec


@dataclass
class RunContext:
    """What a method may use: the data, the budget, where to write, the baseline."""

    data: Data  # batched at the run's own batch size
    budget: Budget  # as this run trains: the config's budget with the run's own settings
    seed: int
    run_dir: Path
    label: str
    baseline: Callable[[], keras.Model]  # a fresh copy of the trained dense model
    # the epochs of each phase trained with the baseline as teacher (shared by the copies a
    # method makes for a phase of its own, such as quantization-aware training)
    taught: list[int] = field(default_factory=list)

    def build(self) -> keras.Model:
        """A fresh, untrained model of the budget's architecture."""
        return models.build_for(self.data, self.budget.model, **self.budget.model_args)

    def train(self, model: keras.Model, phase: str, callbacks: list | None = None,
              sparsity: float = 0.0, epochs: int | None = None):
        """Compile and fit ``model`` for the budget's ``train`` or ``finetune`` phase.

        ``sparsity`` is what the run prunes to: with ``keep_best`` only epochs at that
        sparsity may be handed back.  ``epochs`` replaces the phase's, for a method whose
        point is a longer run (RigL at twice the epochs), named in its settings.  With the
        phase's ``distill`` the trained dense baseline is the teacher.
        """
        spec = getattr(self.budget, phase)
        if epochs is not None:
            spec = dataclasses.replace(spec, epochs=epochs)
        training.compile_for(model, spec, training.steps_per_epoch(self.data))
        if spec.distill:
            self.taught.append(spec.epochs)
        return training.fit(model, self.data, spec, label=self.label, run_dir=self.run_dir,
                            callbacks=callbacks, sparsity=sparsity,
                            teacher=self.baseline() if spec.distill else None)


@dataclass
class Outcome:
    model: keras.Model  # plain tf_keras, ready to measure and export
    history: dict[str, list[float]]
    epochs: int
    extra: dict[str, Any] = field(default_factory=dict)  # method-specific record fields
    export: dict[str, Any] = field(default_factory=dict)  # to_tflite's mode, bits, compute
    # what the file is converted from when it is not ``model`` (tfmot's QAT model, whose
    # weights its wrappers hide: ``model`` is then its float twin, for the figures)
    export_model: keras.Model | None = None


@dataclass(frozen=True)
class Method:
    name: str
    run: Callable[[RunContext, dict[str, Any]], Outcome]
    defaults: dict[str, Any] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    from_baseline: bool = True

    # raises ConfigError on bad values; one with a ``phase`` argument also gets the
    # TrainSpec of the phase the run trains in (for settings bounded by its epochs)
    check: Callable[..., None] | None = None
    # raised when the method's code comes to train otherwise on the same settings (a fixed
    # defect): the fingerprint counts it from 2, so its saved results are run again
    revision: int = 1

    def validate(self, params: dict[str, Any], where: str, phase: TrainSpec | None = None) -> None:
        """Check a run's parameters when the config is read, before anything trains."""
        for key in self.required:
            if key not in params:
                raise ConfigError(f"{where}: method '{self.name}' needs '{key}'.")
        sparsity = params.get("sparsity")
        if sparsity is not None and not (isinstance(sparsity, (int, float)) and 0 < sparsity < 1):
            raise ConfigError(f"{where}: sparsity must be a fraction in (0, 1), got {sparsity!r}.")
        if self.check is not None:
            try:
                extra = {"phase": phase} if "phase" in inspect.signature(self.check).parameters else {}
                self.check({**self.defaults, **params}, **extra)
            except (ConfigError, TypeError, ValueError) as exc:
                raise ConfigError(f"{where} ({self.name}): {exc}") from None


METHODS: dict[str, Method] = {}


def register_method(name: str, defaults: dict[str, Any] | None = None,
                    required: tuple[str, ...] = (), from_baseline: bool = True,
                    check: Callable[[dict[str, Any]], None] | None = None, revision: int = 1):
    def decorator(run: Callable[[RunContext, dict[str, Any]], Outcome]):
        METHODS[name] = Method(name, run, dict(defaults or {}), required, from_baseline, check, revision)
        return run

    return decorator
