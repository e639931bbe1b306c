"""Bit allocation: which layers keep 8 bits and which drop to 4.

Layers are ranked by their 4-bit cost per byte that 4 bits save (a sensitivity score,
:mod:`.sensitivity`, divided by ``bytes_8 - bytes_4``): the cheapest bytes go first.  One
criterion says where to stop:

* ``byte_budget``: the quantizable weights must fit in this many bytes;
* ``eight_bit_fraction``: the most important layers keep 8 bits while they hold at most
  this fraction of the quantizable weights (the plan's "important layers 8-bit");
* ``tolerance``: layers drop to 4 bits while the sum of their scores stays within it
  (scores add up only approximately: each was measured with the others at full precision).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ..checks import number
from ..errors import ConfigError
from .sensitivity import SCORES, LayerSensitivity

CRITERIA = ("byte_budget", "eight_bit_fraction", "tolerance")
_COLUMN = {"quantization_loss": "loss_change", "fisher": "fisher"}


@dataclass
class Allocation:
    bits: dict[str, int]  # layer -> 4 or 8, every quantizable layer
    weight_bytes: int  # the quantizable weights as stored at these widths
    criterion: str
    order: list[str] = field(default_factory=list)  # layers from first to last to drop to 4

    @property
    def four_bit(self) -> list[str]:
        return [name for name, b in self.bits.items() if b == 4]


def allocate(table: Sequence[LayerSensitivity], *, score: str = "quantization_loss",
             byte_budget: int | None = None, eight_bit_fraction: float | None = None,
             tolerance: float | None = None) -> Allocation:
    """Widths for the layers of ``table`` under exactly one of the three criteria."""
    given = {k: v for k, v in {"byte_budget": byte_budget, "eight_bit_fraction": eight_bit_fraction,
                               "tolerance": tolerance}.items() if v is not None}
    if len(given) != 1:
        raise ConfigError(f"allocate: give exactly one of {', '.join(CRITERIA)}, got "
                          f"{', '.join(given) or 'none'}.")
    if score not in SCORES:
        raise ConfigError(f"allocate(score=): one of {', '.join(SCORES)}, got {score!r}.")
    ((criterion, limit),) = given.items()
    column = _COLUMN[score]
    movable = [row for row in table if not row.fixed]
    missing = [row.layer for row in movable if getattr(row, column) is None]
    if missing:
        raise ConfigError(f"allocate: no {score} score for {', '.join(missing)}; measure the "
                          f"table with scores=({score!r},).")
    order = sorted(movable, key=lambda r: getattr(r, column) / (r.bytes_8 - r.bytes_4))
    bits = {row.layer: 8 for row in table}
    size = sum(row.bytes_8 for row in table)
    if criterion == "byte_budget":
        budget = number(limit, "allocate(byte_budget=)", low=1, integer=True)
        smallest = size - sum(r.bytes_8 - r.bytes_4 for r in movable)
        if budget < smallest:
            raise ConfigError(f"allocate: byte_budget {budget} is below the {smallest} bytes the "
                              "quantizable weights take with every layer at 4 bits; prune first "
                              "(structured or sparse) or raise the budget.")
        for row in order:
            if size <= budget:
                break
            bits[row.layer], size = 4, size - (row.bytes_8 - row.bytes_4)
    elif criterion == "eight_bit_fraction":
        fraction = number(limit, "allocate(eight_bit_fraction=)", low=0.0, high=1.0)
        allowed, kept = fraction * sum(r.params for r in table), sum(r.params for r in table if r.fixed)
        for row in reversed(order):  # the most important first
            if kept + row.params <= allowed:
                kept += row.params
                continue
            bits[row.layer] = 4
        size = sum(r.bytes_4 if bits[r.layer] == 4 else r.bytes_8 for r in table)
    else:
        allowed, spent = number(limit, "allocate(tolerance=)", low=0.0), 0.0
        for row in order:
            cost = max(getattr(row, column), 0.0)
            if spent + cost > allowed:
                break
            bits[row.layer], spent, size = 4, spent + cost, size - (row.bytes_8 - row.bytes_4)
    return Allocation(bits, size, criterion, [row.layer for row in order])
