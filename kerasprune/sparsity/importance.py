"""Importance scores for unstructured pruning: higher means keep.

* ``magnitude``: ``|w|`` (what tfmot uses).
* ``taylor``: the mean of ``|w * dL/dw|`` over the batches since the last pruning step,
  recorded by :class:`~kerasprune.sparsity.wrapper.PruningWrapper` during ``fit`` (first-order
  Taylor estimate of the loss change when ``w`` is removed).  Before any batch has been
  seen it falls back to magnitude.
* any callable ``f(weight, taylor, name) -> scores`` (arrays of the weight's shape;
  ``taylor`` may be None), for user-defined scores.
"""
from __future__ import annotations

import warnings
from typing import Callable, Sequence, Union

import numpy as np

from ..errors import ConfigError
from ..importance import Importance, lookup, register
from .wrapper import PruningWrapper

# Weight scores (unit "weight" of kerasprune.importance): per wrapper, one score array per
# prunable weight, shaped like the weight; all wrappers are scored together because a
# global ranking compares them.


class Magnitude:
    name, unit = "magnitude", "weight"

    def scores(self, wrappers: Sequence[PruningWrapper], data=None, batches: int = 8
               ) -> list[list[np.ndarray]]:
        return [[np.abs(w.variable.numpy()) for w in wrapper.prunable] for wrapper in wrappers]


class Taylor:
    """Taylor scores; magnitude for every layer if any layer has none yet.

    Mixing the two would compare numbers of unrelated scales in a global ranking, so a
    layer without scores (no batch yet, frozen, no gradient) switches all to magnitude,
    with a warning once training has started.
    """

    name, unit = "taylor", "weight"

    def scores(self, wrappers: Sequence[PruningWrapper], data=None, batches: int = 8
               ) -> list[list[np.ndarray]]:
        untracked = [w.layer.name for w in wrappers if not w.track_scores]
        if untracked:
            raise ConfigError(
                f"importance 'taylor' needs the scores of layers {', '.join(untracked)}, which "
                "were wrapped with track_scores=False; use prune(model) (the default) or "
                "importance='magnitude'."
            )
        taylor = [wrapper.taylor_scores() for wrapper in wrappers]
        missing = [w.layer.name for w, ts in zip(wrappers, taylor) if any(t is None for t in ts)]
        if missing:
            if len(missing) < len(wrappers):
                warnings.warn(f"no Taylor scores for {', '.join(missing)} (frozen or without "
                              "gradient?); ranking every layer by magnitude instead.", stacklevel=3)
            return Magnitude().scores(wrappers)
        return taylor


class Custom:
    """Wraps ``f(weight, taylor, name) -> scores``."""

    unit = "weight"

    def __init__(self, fn: Callable[[np.ndarray, "np.ndarray | None", str], np.ndarray]) -> None:
        self.fn = fn
        self.name = getattr(fn, "__name__", "custom")

    def scores(self, wrappers: Sequence[PruningWrapper], data=None, batches: int = 8
               ) -> list[list[np.ndarray]]:
        return [[self._score(w, t) for w, t in zip(wrapper.prunable, wrapper.taylor_scores())]
                for wrapper in wrappers]

    def _score(self, weight, taylor) -> np.ndarray:
        value = weight.variable.numpy()
        score = np.asarray(self.fn(value, taylor, weight.name), dtype=np.float64)
        if score.shape != value.shape:
            raise ConfigError(
                f"importance '{self.name}' returned shape {score.shape} for weight "
                f"'{weight.name}' of shape {value.shape}; return one score per weight entry."
            )
        return score


ImportanceLike = Union[str, Importance, Callable]
register(Magnitude())
register(Taylor())


def get(importance: ImportanceLike) -> Importance:
    """An Importance from a name (``magnitude``, ``taylor``), an instance or a callable."""
    if isinstance(importance, str):
        return lookup(importance, "weight")
    if hasattr(importance, "scores"):
        return importance
    if callable(importance):
        return Custom(importance)
    raise ConfigError(f"importance must be a name, an Importance or a callable, got {importance!r}.")
