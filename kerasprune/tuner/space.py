"""The compression hyperparameters a search adds to a user's own: how many channels go, how
sparse, how many bits.

Every trial is one point of a three-stage pipeline, each stage optional: structured
pruning (``ratio``, 0 keeps every channel), then adaptive pruning (``sparsity``, 0 prunes
nothing), then the file's precision (``precision``: float32, int8 weights, or mixed 4/8
with ``eight_bit_fraction`` of the quantizable layers at 8 bits).  The ranges are
arguments, so a search can pin a stage (``ratio=(0, 0)``) or narrow it.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..checks import number
from ..errors import ConfigError

PRECISIONS = ("fp32", "dynamic", "mixed")


@dataclass(frozen=True)
class Compression:
    """One trial's choice, read from its hyperparameters."""

    ratio: float
    sparsity: float
    precision: str
    eight_bit_fraction: float | None


def _range(value, name: str, below_one: bool = True) -> tuple[float, float]:
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise ConfigError(f"compression_space: {name} must be (low, high), got {value!r}.")
    low = number(value[0], f"compression_space: {name}[0]", low=0.0, high=1.0, high_open=below_one)
    high = number(value[1], f"compression_space: {name}[1]", low=low, high=1.0, high_open=below_one)
    return low, high


def compression_space(hp, *, ratio=(0.0, 0.5), sparsity=(0.0, 0.95),
                      precisions=PRECISIONS, eight_bit_fraction=(0.0, 1.0)) -> Compression:
    """Register the compression hyperparameters on ``hp`` and return this trial's values."""
    listed = isinstance(precisions, (list, tuple)) and all(isinstance(p, str) for p in precisions)
    if not listed or not precisions or set(precisions) - set(PRECISIONS):
        raise ConfigError(f"compression_space: precisions must be some of {', '.join(PRECISIONS)}, "
                          f"got {precisions!r}.")
    values = {}
    for name, span, step in (("ratio", ratio, 0.1), ("sparsity", sparsity, 0.05)):
        low, high = _range(span, name)
        # a pinned value is registered too, so that trials and reports record it
        values[name] = hp.Fixed(name, low) if low == high else hp.Float(name, low, high, step=step)
    precision = hp.Choice("precision", list(precisions))
    fraction = None
    if "mixed" in precisions:
        low, high = _range(eight_bit_fraction, "eight_bit_fraction", below_one=False)
        with hp.conditional_scope("precision", ["mixed"]):
            fraction = (hp.Float("eight_bit_fraction", low, high, step=0.25) if low < high
                        else hp.Fixed("eight_bit_fraction", low))
    return Compression(float(values["ratio"]), float(values["sparsity"]), precision,
                       float(fraction) if precision == "mixed" and fraction is not None else None)
