"""One interface and one namespace for every importance score, per weight or per channel.

As in Torch-Pruning, a score is an object with a ``name`` and ``scores(target, data=None,
batches=8)``, higher meaning keep.  Its ``unit`` says what one score is for:

* ``"weight"``: unstructured pruning (:mod:`kerasprune.sparsity.importance`); the target
  is a model's pruning wrappers, the scores are shaped like each prunable weight;
* ``"channel"``: structured pruning (:mod:`kerasprune.structured.importance`); the target
  is a :class:`~kerasprune.structured.ChannelGraph`, the scores a value per channel id;
* ``"layer"``: bit allocation (:mod:`kerasprune.quantization.sensitivity`); the target is
  a model, the scores what each quantizable layer loses at 4 bits (higher keeps 8).

Names share one namespace, so a name means one thing: ``taylor`` is ``|w * dL/dw|`` per
weight, ``activation_taylor`` is ``|a * dL/da|`` per channel.  Asking one kind of pruning
for the other's score is an error that says which scores it takes.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from .errors import ConfigError

UNITS = {"weight": "unstructured pruning", "channel": "structured pruning", "layer": "bit allocation"}


@runtime_checkable
class Importance(Protocol):
    name: str
    unit: str  # "weight", "channel" or "layer"

    def scores(self, target: Any, data: Any = None, batches: int = 8) -> Any:
        """Scores for every prunable unit of ``target`` (data scores read ``batches`` of ``data``)."""


REGISTRY: dict[str, Importance] = {}


def register(importance: Importance) -> Importance:
    """Make ``importance`` available by its name (a user's own score too)."""
    if importance.unit not in UNITS:
        raise ConfigError(f"importance {importance.name!r}: unit must be one of "
                          f"{', '.join(UNITS)}, got {importance.unit!r}.")
    REGISTRY[importance.name] = importance
    return importance


def names(unit: str) -> list[str]:
    """The registered scores of ``unit``, in registration order."""
    return [name for name, imp in REGISTRY.items() if imp.unit == unit]


def lookup(name: str, unit: str, where: str = "importance") -> Importance:
    """The registered score ``name`` of ``unit``, or a ConfigError naming the ones there are."""
    found = REGISTRY.get(name) if isinstance(name, str) else None
    if found is not None and found.unit == unit:
        return found
    what = (f"{name!r} scores {found.unit}s ({UNITS[found.unit]})" if found is not None
            else f"unknown importance {name!r}")
    raise ConfigError(f"{where}: {what}; {UNITS[unit]} takes {', '.join(names(unit))}.")
