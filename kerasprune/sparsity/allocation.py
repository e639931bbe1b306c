"""Turn importance scores into masks with an exact sparsity, per layer or globally.

``scope="layer"`` gives every wrapped layer the target sparsity (rounded to whole
weights); ``scope="global"`` ranks all prunable weights of the model together, so layers
that matter less give up more.  In both, every kernel (each direction's input and
recurrent kernels of a Bidirectional LSTM count apart) keeps at least ``min_density`` of
its entries (and at least one), so no path through the model is cut off entirely.  With ``normalize`` each
layer's scores are divided by their root mean square over its live weights before the
global ranking (Molchanov et al. 2017), which evens out the sparsity across layers.  It
is off by default: on MNIST LeNet-5 it pruned the sensitive first convolution hard and
lost accuracy against raw Taylor ranking (experiments/results/adaptive_mnist.md).

Weights pruned earlier rank below every live weight: raising sparsity never revives a
pruned weight, and lowering it revives the best-scored pruned ones first.  With
``revive`` they compete on their scores instead, so masks chosen again at the same
sparsity rewire: a pruned weight keeps its last value and, with Taylor importance, keeps
accruing ``|w * dL/dw|`` from the full gradient, so one that would now lower the loss
more than a live one takes its place (like Dynamic Network Surgery's splicing).
"""
from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

from ..checks import choice, number
from .importance import ImportanceLike, get
from .wrapper import PruningWrapper

Scope = Literal["global", "layer"]
SCOPES = ("global", "layer")


def allocate(
    wrappers: Sequence[PruningWrapper],
    sparsity: float,
    importance: ImportanceLike = "magnitude",
    scope: Scope = "global",
    min_density: float = 0.005,
    normalize: bool = False,
    revive: bool = False,
) -> list[list[np.ndarray]]:
    """New masks (one list per wrapper, one array per prunable weight) at ``sparsity``."""
    sparsity = number(sparsity, "sparsity", low=0.0, high=1.0, high_open=True)
    min_density = number(min_density, "min_density", low=0.0, high=1.0)
    choice(scope, "scope", SCOPES)
    scorer = get(importance)
    scores = scorer.scores(wrappers)
    if scope == "global" and normalize:
        scores = [_layer_normalized(w, layer_scores) for w, layer_scores in zip(wrappers, scores)]
    ranked = _rank_keys(wrappers, scores, revive)
    if scope == "layer":
        keeps = [_keeps(kernels, _kept(kernels, sparsity), min_density) for kernels in ranked]
    else:
        flat = [keys for kernels in ranked for keys in kernels]
        flat_keeps = iter(_keeps(flat, _kept(flat, sparsity), min_density))
        keeps = [[next(flat_keeps) for _ in kernels] for kernels in ranked]
    return [[_mask(keys, keep, mask.shape) for keys, keep, mask in zip(kernels, layer_keeps, w.masks)]
            for w, kernels, layer_keeps in zip(wrappers, ranked, keeps)]


def _kept(kernels: list[np.ndarray], sparsity: float) -> int:
    total = sum(keys.size for keys in kernels)
    return total - int(round(sparsity * total))


def _layer_normalized(wrapper: PruningWrapper, scores: list[np.ndarray]) -> list[np.ndarray]:
    live = np.concatenate([np.asarray(sc, dtype=np.float64)[m.numpy() != 0]
                           for sc, m in zip(scores, wrapper.masks)])
    rms = float(np.sqrt(np.mean(live ** 2))) if live.size else 0.0
    return [np.asarray(sc, dtype=np.float64) / rms for sc in scores] if rms > 0 else scores


def _rank_keys(wrappers: Sequence[PruningWrapper], scores: list[list[np.ndarray]],
               revive: bool = False) -> list[list[np.ndarray]]:
    """Integer sort keys per prunable weight: every live entry above every pruned one, then by score.

    Scores are replaced by their rank over the whole model, so keys are exact integers
    (``live * N + rank``, or the rank alone with ``revive``) whatever their scale.
    """
    flat_scores, live = [], []
    for wrapper, layer_scores in zip(wrappers, scores):
        for score, mask in zip(layer_scores, wrapper.masks):
            flat_scores.append(np.nan_to_num(np.asarray(score, dtype=np.float64).ravel(), nan=0.0))
            live.append((mask.numpy().ravel() != 0) & (not revive))
    if not flat_scores:
        return [[] for _ in wrappers]
    all_scores = np.concatenate(flat_scores)
    rank = np.empty(all_scores.size, dtype=np.int64)
    rank[np.argsort(all_scores, kind="stable")] = np.arange(all_scores.size)
    keys = iter(np.split(np.concatenate(live).astype(np.int64) * all_scores.size + rank,
                         np.cumsum([s.size for s in flat_scores])[:-1]))
    return [[next(keys) for _ in wrapper.masks] for wrapper in wrappers]


def _keeps(kernels: list[np.ndarray], budget: int, min_density: float) -> list[int]:
    """How many entries of each kernel to keep: ``budget`` in all, by key, with a floor.

    The floor is per kernel, not per layer: a Bidirectional wrapper or an LSTM holds
    several kernels, and one of them fully pruned (one direction's input kernel) would
    cut that path off while the layer as a whole still looked alive.
    """
    floors = [min(k.size, max(1, int(np.ceil(min_density * k.size)))) if k.size else 0 for k in kernels]
    # Each kernel's best `floor` entries are kept regardless; the rest compete by key.
    rest = [np.sort(k)[::-1][f:] for k, f in zip(kernels, floors)]
    extra = budget - sum(floors)
    pool = np.concatenate(rest) if rest else np.zeros(0, dtype=np.int64)
    if extra <= 0 or pool.size == 0:
        return floors
    threshold = np.partition(pool, pool.size - extra)[pool.size - extra]  # keys are unique
    return [f + int(np.sum(r >= threshold)) for f, r in zip(floors, rest)]


def _mask(keys: np.ndarray, keep: int, shape) -> np.ndarray:
    """A 0/1 mask of ``shape`` keeping the ``keep`` entries with the highest keys."""
    flat = np.zeros(keys.size, dtype=np.float32)
    if keep > 0:
        flat[np.argsort(-keys, kind="stable")[:keep]] = 1.0
    return flat.reshape(tuple(shape))
