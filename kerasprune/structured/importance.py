"""How much each removable channel (and attention head) matters.

Weight norms need no data: L1 or L2 of the weights that make the channel, summed over the
layers that make it together (a residual stream has several).  The data scores are taken
where a channel is activated (after its ReLU, or at the layer that makes it if none
follows): Taylor |a * dL/da| (Molchanov et al. 2017), mean |a|, and APoZ, the share of
zero activations (Hu et al. 2016; a channel that is mostly zero scores low).
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..backend import keras, tf
from ..checks import number
from ..batches import check_batch
from ..errors import ConfigError
from ..importance import lookup, names, register
from ..metrics import loss_of
from ..metrics.quality import takes_class_ids
from ..sparsity import importance as _weight_scores  # noqa: F401  (registered, so asking for one by
# mistake here is told it scores weights, whatever was imported before)
from .graph import ChannelGraph
from .rules import MHA_HEAD_SCORES, rule_for

_RELU_LIKE = ("relu", "relu6", "elu", "selu", "gelu", "swish", "silu", "leaky_relu")


def head_scores(graph: ChannelGraph) -> dict[str, np.ndarray]:
    """L1 norm of each head's query, key, value and output weights."""
    return {name: np.abs(MHA_HEAD_SCORES(None, graph.model.get_layer(name).get_weights())).sum(axis=1)
            for name in graph.heads}


class _ChannelScore:
    """A channel score of the shared interface (:mod:`kerasprune.importance`), unit "channel"."""

    unit = "channel"

    def __init__(self, name: str, needs_data: bool) -> None:
        self.name, self.needs_data = name, needs_data

    def scores(self, graph: ChannelGraph, data: tf.data.Dataset | None = None,
               batches: int = 8) -> dict[int, float]:
        if not self.needs_data:
            return _norms(graph, self.name)
        if not isinstance(data, tf.data.Dataset):
            raise ConfigError(f"channel importance {self.name!r} needs data: pass a tf.data.Dataset "
                              f"of (inputs, labels) batches, got {type(data).__name__}.")
        batches = number(batches, "channel importance batches", low=1, integer=True)
        return _activation_scores(graph, self.name, data, batches)


for _name, _needs_data in (("l1", False), ("l2", False), ("activation_taylor", True),
                           ("mean_activation", True), ("apoz", True)):
    register(_ChannelScore(_name, _needs_data))

#: the channel scores (``activation_taylor`` is |a * dL/da| per channel; the unstructured
#: ``taylor`` is |w * dL/dw| per weight)
IMPORTANCES = tuple(names("channel"))


def channel_scores(graph: ChannelGraph, method: str = "l1", data: tf.data.Dataset | None = None,
                   batches: int = 8) -> dict[int, float]:
    """A score per channel id (higher: keep).  Data methods read ``batches`` of ``data``."""
    return lookup(method, "channel", "channel importance").scores(graph, data, batches)


def _norms(graph: ChannelGraph, method: str) -> dict[int, float]:
    rows = {}
    for name in {n for g in graph.channels for n in g.sources}:
        layer = graph.model.get_layer(name)
        rows[name] = rule_for(layer).scores(layer, layer.get_weights())
    norm = (lambda r: np.abs(r).sum()) if method == "l1" else (lambda r: np.sqrt((r ** 2).sum()))
    return {g.id: float(sum(norm(rows[n][p]) for n, p in g.sources.items())) for g in graph.channels}


def activation_points(graph: ChannelGraph) -> list[tuple[object, np.ndarray]]:
    """(tensor, its channel ids) after every ReLU-like activation; sources' outputs otherwise."""
    points, covered = [], set()
    for layer in graph.model.layers:
        if layer.name not in graph.node_ids:
            continue
        act = getattr(getattr(layer, "activation", None), "__name__", "")
        relu_layer = isinstance(layer, (keras.layers.ReLU, keras.layers.ELU, keras.layers.LeakyReLU))
        if relu_layer or act in _RELU_LIKE:
            ids = graph.canonical(graph.node_ids[layer.name][1][0])
            points.append((layer.output, ids))
            covered.update(ids.tolist())
    for g in graph.channels:
        if g.id not in covered:
            for name in g.sources:
                ids = graph.canonical(graph.node_ids[name][1][0])
                points.append((graph.model.get_layer(name).output, ids))
                covered.update(ids.tolist())
    return points


def masked_sums(values: tf.Tensor, mask: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor]:
    """Per example and channel, the sum of ``values`` (float32) over the positions the Keras
    ``mask`` keeps (all without one), and per example how many positions that is: padding
    is not activity, and a padded sequence is not quieter.  A mean per example or over a
    batch is one division away."""
    flat = tf.reshape(tf.cast(values, tf.float32), [tf.shape(values)[0], -1, values.shape[-1]])
    keep = tf.ones_like(flat[..., :1]) if mask is None else \
        tf.reshape(tf.cast(mask, tf.float32), [tf.shape(values)[0], -1, 1])  # one per position
    return tf.reduce_sum(flat * keep, 1), tf.reduce_sum(keep, 1)


def _activation_scores(graph: ChannelGraph, method: str, data, batches: int) -> dict[int, float]:
    points = activation_points(graph)
    probe = keras.Model(graph.model.inputs, [graph.model.output, *(t for t, _ in points)])
    loss_fn = loss_of(graph.model)
    totals = [np.zeros(len(ids)) for _, ids in points]
    seen, where = 0, f"channel importance {method!r}"
    for x, y in data.take(batches):
        if not seen:  # checked as read: a peek would move a shuffled pipeline's order
            check_batch(x, y, graph.model, where, classes=takes_class_ids(graph.model))
        if method == "activation_taylor":
            with tf.GradientTape() as tape:
                outs = probe(x, training=False)
                loss = loss_fn(y, outs[0])
            grads = tape.gradient(loss, outs[1:])
            values = [tf.abs(tf.reduce_sum(tf.reshape(a * g, [tf.shape(a)[0], -1, a.shape[-1]]), 1))
                      for a, g in zip(outs[1:], grads)]
        else:
            outs = probe(x, training=False)[1:]
            values = [tf.math.divide_no_nan(*masked_sums(
                tf.abs(a) if method == "mean_activation" else tf.cast(a != 0, tf.float32),
                getattr(a, "_keras_mask", None))) for a in outs]
        for total, v in zip(totals, values):
            total += v.numpy().sum(axis=0)
        seen += int(x.shape[0]) if hasattr(x, "shape") else 1
    if not seen:
        raise ConfigError(f"{where}: the dataset is empty; pass batches of (inputs, labels).")
    per_id: dict[int, list[float]] = defaultdict(list)
    for (_, ids), total in zip(points, totals):
        for i, value in zip(ids.tolist(), total / max(seen, 1)):
            per_id[i].append(value)
    return {g.id: float(np.mean(per_id[g.id])) if per_id[g.id] else 0.0 for g in graph.channels}
