"""Which channels must be cut together: a dependency graph over a functional tf_keras model.

Every channel of every tensor gets an integer id.  A layer that makes channels (Dense,
Conv, Embedding, LSTM, attention) gives its outputs new ids; one that works channel by
channel (BatchNorm, activations, pooling, depthwise convolutions) passes them on; Flatten
repeats them over positions; Concatenate joins them; Add and the other merges make the
ids at the same position one id (a union-find).  What is left are channels, each one
removable unit with every place in the graph that holds it; channels that change the
widths of the same layers form a group (Torch-Pruning's word), cut at one ratio.  Channels that reach a
model input or output, or a layer without a rule, are frozen and reported with the reason.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from ..backend import keras, require_graph_model, tf
from ..errors import ModelError
from .rules import Unsupported, mixes_outputs, rule_for


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []

    def fresh(self, n: int) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return np.arange(start, start + n)

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class Channel:
    """One removable channel: the layers that make it (``sources``: layer -> position)."""

    id: int
    sources: dict[str, int]

    @property
    def key(self) -> tuple[str, ...]:
        """The layers whose widths move together: channels with the same key form a group."""
        return tuple(sorted(self.sources))


@dataclass
class ChannelGraph:
    """The result of :func:`analyze`: channels, their groups, heads, frozen channels and why."""

    model: keras.Model
    # layer -> (in ids, out ids), for the layers whose channel rule applies
    node_ids: dict[str, tuple[list[np.ndarray], list[np.ndarray]]]
    heads: dict[str, int]  # attention layer -> number of heads (prunable as units)
    channels: list[Channel]
    frozen: dict[str, str] = field(default_factory=dict)  # layer -> reason its channels stay
    _find: object = None

    def canonical(self, ids: np.ndarray) -> np.ndarray:
        return np.array([self._find(int(i)) for i in ids], dtype=np.int64)

    def groups(self) -> dict[tuple[str, ...], list[Channel]]:
        """The channels by the layers whose widths they change (a residual stream is one group)."""
        out: dict[tuple[str, ...], list[Channel]] = defaultdict(list)
        for channel in self.channels:
            out[channel.key].append(channel)
        return dict(out)

    def describe(self) -> str:
        lines = [f"{len(self.channels)} removable channels in {len(self.groups())} groups"]
        lines += [f"  {', '.join(k)}: {len(v)} channels" for k, v in self.groups().items()]
        lines += [f"  heads of {name}: {n}" for name, n in self.heads.items()]
        lines += [f"  left intact: {name}: {why}" for name, why in self.frozen.items()]
        return "\n".join(lines)


def analyze(model: keras.Model) -> ChannelGraph:
    """Build the channel dependency graph of a functional or Sequential tf_keras model."""
    model = require_graph_model(model, "analyze", "structured pruning")
    uf = _UnionFind()
    tensor_ids: dict[int, np.ndarray] = {}
    node_ids: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    frozen_ids: list[int] = []
    frozen: dict[str, str] = {}
    called: set[str] = set()
    sources: dict[str, np.ndarray] = {}
    heads: dict[str, int] = {}

    def freeze(ids, where: str, why: str) -> None:
        frozen_ids.extend(int(i) for i in ids)
        frozen.setdefault(where, why)

    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            layer = node.layer
            outputs = tf.nest.flatten(node.outputs)
            if node.is_input:
                ids = uf.fresh(_width(outputs[0]))
                tensor_ids[id(outputs[0])] = ids
                freeze(ids, layer.name, "a model input keeps its channels")
                continue
            in_ids = [tensor_ids[id(t)] for t in node.keras_inputs]
            if layer.name in called:
                raise ModelError(f"analyze: layer '{layer.name}' is called more than once; shared "
                                 "layers cannot be shrunk for one call only.")
            called.add(layer.name)
            out = _outputs(layer, in_ids, uf, freeze)
            if out is not None and (len(outputs) != 1 or len(out[0]) != _width(outputs[0])):
                freeze([], layer.name, "returns several tensors" if len(outputs) != 1 else
                       "its output is wider than its channel rule says (a broadcasting merge?)")
                out = None
            mapped = out is not None
            if out is None:
                out = [uf.fresh(_width(t)) for t in outputs]
                for ids in [*in_ids, *out]:
                    freeze(ids, layer.name, frozen[layer.name])
            elif rule_for(layer).source:
                sources[layer.name] = out[0]
                if why := mixes_outputs(layer):
                    freeze(out[0], layer.name, why)
                if rule_for(layer).inner:
                    heads[layer.name] = int(rule_for(layer).inner(layer))
            if layer.name not in frozen and rule_for(layer).unifies(layer):
                _unify(uf, in_ids, layer.name, freeze)
            for t, ids in zip(outputs, out):
                tensor_ids[id(t)] = ids
            if mapped:  # a layer its rule refused keeps every channel: no cut ever reaches it
                node_ids[layer.name] = (in_ids, out)

    for t in model.outputs:
        freeze(tensor_ids[id(t)], t._keras_history.layer.name, "a model output keeps its channels")
    blocked = {uf.find(i) for i in frozen_ids}
    channels: dict[int, Channel] = {}
    for name, ids in sources.items():
        for position, i in enumerate(ids):
            root = uf.find(int(i))
            if root not in blocked:
                channels.setdefault(root, Channel(root, {})).sources.setdefault(name, position)
    return ChannelGraph(model, node_ids, heads, list(channels.values()),
                        {k: v for k, v in frozen.items() if "model input" not in v}, uf.find)


def _width(tensor) -> int:
    if tensor.shape.rank is None or tensor.shape[-1] is None:
        return 0
    return int(tensor.shape[-1]) if tensor.shape.rank >= 2 else 0


def _outputs(layer, in_ids, uf: _UnionFind, freeze) -> list[np.ndarray] | None:
    """The layer's output ids by its rule, or None (and a reason) if it has none."""
    rule = rule_for(layer)
    if isinstance(layer, keras.Model):
        reason = "a nested model: apply structured pruning to it separately"
    elif getattr(layer, "data_format", "channels_last") == "channels_first":
        reason = "channels_first: only channels-last layouts are mapped"
    elif rule is None:
        reason = (f"no channel rule for {type(layer).__name__} "
                  "(teach it with kerasprune.structured.register_rule)")
    else:
        try:
            return [np.asarray(rule.outputs(layer, in_ids, uf.fresh), dtype=np.int64)]
        except Unsupported as exc:
            reason = str(exc)
    freeze([], layer.name, reason)
    return None


def _unify(uf: _UnionFind, in_ids: list[np.ndarray], where: str, freeze) -> None:
    widths = {len(ids) for ids in in_ids}
    if len(widths) != 1:
        for ids in in_ids:
            freeze(ids, where, "merges inputs of different widths (broadcasting)")
        return
    for ids in in_ids[1:]:
        for a, b in zip(in_ids[0], ids):
            uf.union(int(a), int(b))


__all__ = ["Channel", "ChannelGraph", "analyze"]
