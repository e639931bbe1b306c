"""How dense each weight of a network that is sparse from the start may be: uniform or ERK.

A sparse-from-initialization run (:mod:`.dynamic`) fixes each kernel's number of nonzeros
before the first step.  ``uniform`` gives every kernel the target density.  ``erk``
(Erdős–Rényi-Kernel, Evci et al. 2020) makes a kernel's density proportional to the sum
of its dimensions over their product, so small layers (a first convolution, an output
layer) stay denser and large ones give up more: better accuracy at equal nonzeros, at a
higher FLOP count.  Every kernel's density is kept within ``[min_density, max_density]``;
the floor is what stops a too-sparse layer from cutting the gradient's path (LeNet-5
falling from 90% to chance, sparse_learning issues 6 and 15), and the total number of
nonzeros stays exactly the target's.
"""
from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

from ..checks import choice, number
from ..errors import ConfigError

Distribution = Literal["uniform", "erk"]
DISTRIBUTIONS = ("uniform", "erk")


def bounds(min_density: float, max_density: float, where: str = "") -> tuple[float, float]:
    """The density floor and cap, checked."""
    low = number(min_density, f"{where}min_density", low=0.0, high=1.0)
    high = number(max_density, f"{where}max_density", low=0.0, high=1.0, low_open=True)
    if low > high:
        raise ConfigError(f"{where}min_density ({low:g}) must not exceed max_density ({high:g}).")
    return low, high


def densities(shapes: Sequence[Sequence[int]], sparsity: float, distribution: Distribution = "erk",
              min_density: float = 0.02, max_density: float = 1.0) -> list[int]:
    """Nonzeros per kernel of ``shapes``: ``round((1 - sparsity) * total)`` in all.

    Densities are ``clip(scale * raw, min_density, max_density)`` with ``raw`` 1
    (uniform) or ERK's ``sum(shape) / prod(shape)``, ``scale`` found by bisection; the
    rounding is then spread so the counts add up exactly.
    """
    sparsity = number(sparsity, "sparsity", low=0.0, high=1.0, high_open=True)
    choice(distribution, "distribution", DISTRIBUTIONS)
    low, high = bounds(min_density, max_density)
    sizes = np.array([int(np.prod(s)) for s in shapes], dtype=np.float64)
    total = sizes.sum()
    target = int(round((1.0 - sparsity) * total))
    floors, caps = np.minimum(1.0, np.maximum(low, 1.0 / sizes)), np.full_like(sizes, high)
    if target < (floors * sizes).sum() or target > (np.maximum(floors, caps) * sizes).sum():
        raise ConfigError(
            f"sparsity {sparsity:g} cannot be met with every kernel's density in "
            f"[{low:g}, {high:g}] (it needs {target} nonzeros of {int(total)}; the bounds allow "
            f"{int((floors * sizes).sum())} to {int((np.maximum(floors, caps) * sizes).sum())}). "
            "Lower min_density or raise max_density.")
    raw = np.ones_like(sizes) if distribution == "uniform" else np.array(
        [sum(s) / np.prod(s) for s in shapes], dtype=np.float64)

    def kept(scale: float) -> np.ndarray:
        return np.clip(scale * raw, floors, np.maximum(floors, caps)) * sizes

    lo, hi = 0.0, 1.0
    while kept(hi).sum() < target:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if kept(mid).sum() < target else (lo, mid)
    exact = kept(hi)
    counts = np.floor(exact).astype(np.int64)
    most = np.floor(np.maximum(floors, caps) * sizes).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")  # the largest remainders first
    short = target - int(counts.sum())
    for i in order:
        if short <= 0:
            break
        if counts[i] < most[i]:
            counts[i] += 1
            short -= 1
    if short > 0:  # the caps, in whole weights, hold fewer than the target
        raise ConfigError(f"sparsity {sparsity:g} cannot be met with every kernel at most "
                          f"{high:g} dense ({int(most.sum())} nonzeros at most, {target} needed); "
                          "raise max_density.")
    return [int(c) for c in counts]


__all__ = ["DISTRIBUTIONS", "Distribution", "bounds", "densities"]
