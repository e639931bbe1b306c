"""The MACs of the model a plan would shrink to, counted without building it.

A search that tries hundreds of plans (the RL agent, a budget's bisection) cannot clone
the model for each; the rules' own ``weights`` slicing gives each kernel's size after the
cut, and every kernel entry of a dense, convolutional or recurrent layer is used once per
position, as :func:`kerasprune.metrics.count_macs` counts it.  A layer's count is kept per
cut it has seen: slicing copies a kernel-sized array, and a search asks about the same few
cuts of each layer hundreds of times.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from ..backend import keras
from ..errors import ConfigError, ModelError
from ..metrics import count_macs
from .graph import ChannelGraph
from .plan import Plan, channel_parts, make_plan
from .rules import Cut, rule_for


class _Costed(NamedTuple):
    """A layer a cut can reach: what slicing its weights needs, and its MACs per kernel entry."""

    layer: keras.layers.Layer
    rule: object
    shapes: list[tuple[int, ...]]
    measured: list[int]  # indices of the weights MACs count (rank >= 2)
    per_entry: float
    in_ids: list[np.ndarray]  # canonical channel ids of each input
    out_ids: np.ndarray


class PlanCost:
    """``cost(plan)`` or ``cost.of_kept({group: channels kept})``: MACs per example after the cut."""

    def __init__(self, model: keras.Model, graph: ChannelGraph) -> None:
        macs = count_macs(model)
        self.graph, self.dense = graph, macs.dense
        self.layer_macs = {name: dense for name, (dense, _) in macs.per_layer.items()}
        self.groups = graph.groups()
        self._ids = {key: np.array([c.id for c in channels]) for key, channels in self.groups.items()}
        self._parts = channel_parts(graph)
        self._layers: list[_Costed] = []
        self._fixed = 0  # MACs of layers no cut reaches
        top_level = {layer.name for layer in model.layers}
        for name, (dense, _) in macs.per_layer.items():
            if name not in top_level:  # inside a nested model, which structured pruning leaves intact
                self._fixed += dense
                continue
            layer = model.get_layer(name)
            if isinstance(layer, keras.layers.MultiHeadAttention):
                raise ModelError(f"PlanCost: '{name}' is attention, whose MACs are not one use per "
                                 "kernel entry; plan attention models by ratio (structured method).")
            shapes = [tuple(w.shape) for w in layer.weights]
            measured = [i for i, s in enumerate(shapes) if len(s) >= 2]
            entries = sum(int(np.prod(shapes[i])) for i in measured)
            rule = rule_for(layer)
            if name not in graph.node_ids or rule is None or rule.weights is None or not entries:
                self._fixed += dense
                continue
            in_ids, out_ids = graph.node_ids[name]
            self._layers.append(_Costed(layer, rule, shapes, measured, dense / entries,
                                        [graph.canonical(i) for i in in_ids], graph.canonical(out_ids[0])))
        every = [c.id for c in graph.channels] + [int(i.max(initial=0)) for entry in self._layers
                                                   for i in (*entry.in_ids, entry.out_ids)]
        self._top = 1 + max(every, default=0)
        self._entries: dict[tuple, float] = {}  # (layer, its cut) -> MACs it keeps

    def __call__(self, plan: Plan) -> int:
        keep = np.ones(self._top, bool)
        keep[np.asarray(sorted(plan.removed), dtype=np.int64)] = False
        return self._count(keep)

    def of_kept(self, kept: Mapping[tuple[str, ...], int]) -> int:
        """MACs when group ``key`` keeps ``kept[key]`` channels (groups not named keep all).

        Exact where a channel costs the same wherever it is; where an output has parts (a
        Bidirectional layer's directions) it counts the plan that keeps the most of them in
        one part, and one channel in each part a plan would empty (as ``make_plan`` does):
        no plan of those counts costs more, so a budget checked here holds for all of them.
        """
        keep = np.ones(self._top, bool)
        for key, count in kept.items():
            keep[self._ids[key][int(count):]] = False
        for part in self._parts:
            if not keep[part].any():
                keep[part[0]] = True
        return self._count(keep)

    def fraction(self, plan_or_kept: Plan | Mapping) -> float:
        """MACs after the cut over the dense model's."""
        value = self(plan_or_kept) if isinstance(plan_or_kept, Plan) else self.of_kept(plan_or_kept)
        return value / self.dense if self.dense else 1.0

    def _count(self, keep: np.ndarray) -> int:
        total = float(self._fixed)
        for n, entry in enumerate(self._layers):
            cut = Cut([keep[i] for i in entry.in_ids], keep[entry.out_ids])
            key = (n, cut.keep_out.tobytes(), *(k.tobytes() for k in cut.keep_in))
            if key not in self._entries:
                shells = [np.broadcast_to(np.zeros((), bool), s) for s in entry.shapes]  # shapes, no data
                sliced = entry.rule.weights(entry.layer, shells, cut)
                self._entries[key] = entry.per_entry * sum(sliced[i].size for i in entry.measured)
            total += self._entries[key]
        return int(round(total))


def ratio_for_macs(budget: float, graph: ChannelGraph, scores: Mapping[int, float], cost: PlanCost,
                   **plan_options) -> float:
    """The least ratio whose plan (``make_plan`` with ``plan_options``) leaves at most
    ``budget`` of the dense MACs, by bisection."""
    def fraction(ratio: float) -> float:
        return cost.fraction(make_plan(graph, scores, ratio, **plan_options))

    low, high = 0.0, 0.99
    if fraction(low) <= budget:
        return low
    if fraction(high) > budget:
        raise ConfigError(f"structured: even a ratio of 0.99 leaves {fraction(high):.3f} of the dense "
                          f"MACs, above the budget of {budget:g} (the rest is in layers left intact); "
                          "raise the budget.")
    for _ in range(30):
        middle = (low + high) / 2
        low, high = (low, middle) if fraction(middle) <= budget else (middle, high)
    return high
