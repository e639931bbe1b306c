"""Turn importance scores into masks with an exact sparsity, per layer or globally.

``scope="layer"`` gives every wrapped layer the target sparsity (rounded to whole
weights); ``scope="global"`` ranks all prunable weights of the model together, so layers
that matter less give up more, while each layer keeps at least ``min_density`` of its
weights (and at least one), so no layer is cut off entirely.  With ``normalize`` each
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

from .errors import ConfigError
from .importance import ImportanceLike, get
from .wrapper import PruningWrapper

Scope = Literal["global", "layer"]


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
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"sparsity must be in [0, 1), got {sparsity}.")
    if scope not in ("global", "layer"):
        raise ConfigError(f"scope must be 'global' or 'layer', got {scope!r}.")
    scorer = get(importance)
    scores = scorer.scores(wrappers)
    if scope == "global" and normalize:
        scores = [_layer_normalized(w, layer_scores) for w, layer_scores in zip(wrappers, scores)]
    ranked = _rank_keys(wrappers, scores, revive)
    sizes = [keys.size for keys in ranked]
    if scope == "layer":
        keeps = [n - int(round(sparsity * n)) for n in sizes]
    else:
        keeps = _global_keeps(ranked, sum(sizes) - int(round(sparsity * sum(sizes))), min_density)
    return [_masks_from_keep(w, keys, keep) for w, keys, keep in zip(wrappers, ranked, keeps)]


def _layer_normalized(wrapper: PruningWrapper, scores: list[np.ndarray]) -> list[np.ndarray]:
    live = np.concatenate([np.asarray(sc, dtype=np.float64)[m.numpy() != 0]
                           for sc, m in zip(scores, wrapper.masks)])
    rms = float(np.sqrt(np.mean(live ** 2))) if live.size else 0.0
    return [np.asarray(sc, dtype=np.float64) / rms for sc in scores] if rms > 0 else scores


def _rank_keys(wrappers: Sequence[PruningWrapper], scores: list[list[np.ndarray]],
               revive: bool = False) -> list[np.ndarray]:
    """Integer sort keys per layer: every live weight above every pruned one, then by score.

    Scores are replaced by their rank over the whole model, so keys are exact integers
    (``live * N + rank``, or the rank alone with ``revive``) whatever their scale.
    """
    flat_scores, live, sizes = [], [], []
    for wrapper, layer_scores in zip(wrappers, scores):
        for score, mask in zip(layer_scores, wrapper.masks):
            flat_scores.append(np.nan_to_num(np.asarray(score, dtype=np.float64).ravel(), nan=0.0))
            live.append((mask.numpy().ravel() != 0) & (not revive))
        sizes.append(sum(int(np.prod(m.shape)) for m in wrapper.masks))
    if not flat_scores:
        return [np.zeros(0, dtype=np.int64) for _ in wrappers]
    all_scores = np.concatenate(flat_scores)
    rank = np.empty(all_scores.size, dtype=np.int64)
    rank[np.argsort(all_scores, kind="stable")] = np.arange(all_scores.size)
    keys = np.concatenate(live).astype(np.int64) * all_scores.size + rank
    return np.split(keys, np.cumsum(sizes)[:-1])


def _global_keeps(ranked: list[np.ndarray], budget: int, min_density: float) -> list[int]:
    floors = [min(k.size, max(1, int(np.ceil(min_density * k.size)))) if k.size else 0 for k in ranked]
    # Each layer's best `floor` weights are kept regardless; the rest compete globally.
    rest = [np.sort(k)[::-1][f:] for k, f in zip(ranked, floors)]
    extra = budget - sum(floors)
    pool = np.concatenate(rest)
    if extra <= 0 or pool.size == 0:
        return floors
    threshold = np.partition(pool, pool.size - extra)[pool.size - extra]  # keys are unique
    return [f + int(np.sum(r >= threshold)) for f, r in zip(floors, rest)]


def _masks_from_keep(wrapper: PruningWrapper, keys: np.ndarray, keep: int) -> list[np.ndarray]:
    flat = np.zeros(keys.size, dtype=np.float32)
    if keep > 0:
        order = np.argsort(-keys, kind="stable")
        flat[order[:keep]] = 1.0
    masks, start = [], 0
    for mask in wrapper.masks:
        n = int(np.prod(mask.shape))
        masks.append(flat[start:start + n].reshape(mask.shape))
        start += n
    return masks
