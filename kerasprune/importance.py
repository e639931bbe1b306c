"""Importance scores for unstructured pruning: higher means keep.

* ``magnitude``: ``|w|`` (what tfmot uses).
* ``taylor``: the mean of ``|w * dL/dw|`` over the batches since the last pruning step,
  recorded by :class:`~kerasprune.wrapper.PruningWrapper` during ``fit`` (first-order
  Taylor estimate of the loss change when ``w`` is removed).  Before any batch has been
  seen it falls back to magnitude.
* any callable ``f(weight, taylor, name) -> scores`` (arrays of the weight's shape;
  ``taylor`` may be None), for user-defined scores.
"""
from __future__ import annotations

from typing import Callable, Protocol, Union

import numpy as np

from .errors import ConfigError
from .wrapper import PruningWrapper


class Importance(Protocol):
    name: str

    def scores(self, wrapper: PruningWrapper) -> list[np.ndarray]:
        """One score array per prunable weight of ``wrapper``, shaped like the weight."""


class Magnitude:
    name = "magnitude"

    def scores(self, wrapper: PruningWrapper) -> list[np.ndarray]:
        return [np.abs(w.variable.numpy()) for w in wrapper.prunable]


class Taylor:
    name = "taylor"

    def scores(self, wrapper: PruningWrapper) -> list[np.ndarray]:
        taylor = wrapper.taylor_scores()
        return [t if t is not None else np.abs(w.variable.numpy())
                for t, w in zip(taylor, wrapper.prunable)]


class Custom:
    """Wraps ``f(weight, taylor, name) -> scores``."""

    def __init__(self, fn: Callable[[np.ndarray, "np.ndarray | None", str], np.ndarray]) -> None:
        self.fn = fn
        self.name = getattr(fn, "__name__", "custom")

    def scores(self, wrapper: PruningWrapper) -> list[np.ndarray]:
        out = []
        for w, t in zip(wrapper.prunable, wrapper.taylor_scores()):
            value = w.variable.numpy()
            score = np.asarray(self.fn(value, t, w.name), dtype=np.float64)
            if score.shape != value.shape:
                raise ConfigError(
                    f"importance '{self.name}' returned shape {score.shape} for weight "
                    f"'{w.name}' of shape {value.shape}; return one score per weight entry."
                )
            out.append(score)
        return out


ImportanceLike = Union[str, Importance, Callable]
_BUILTIN = {"magnitude": Magnitude, "taylor": Taylor}


def get(importance: ImportanceLike) -> Importance:
    """An Importance from a name (``magnitude``, ``taylor``), an instance or a callable."""
    if isinstance(importance, str):
        if importance not in _BUILTIN:
            raise ConfigError(
                f"unknown importance '{importance}'; use one of {', '.join(_BUILTIN)} or a callable."
            )
        return _BUILTIN[importance]()
    if hasattr(importance, "scores"):
        return importance
    if callable(importance):
        return Custom(importance)
    raise ConfigError(f"importance must be a name, an Importance or a callable, got {importance!r}.")
