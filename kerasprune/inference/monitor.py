"""What each unit does on live traffic: a running mean of |activation| and a firing rate.

The monitor adds, to the model that serves a batch, one output per activation point of
:func:`kerasprune.structured.activation_points` (after each ReLU, or at the layer that
makes a channel): the batch's mean |a| and its share of nonzero values, per channel, over
the positions the Keras mask keeps (padding is not traffic).  So the statistics come out
of the same compiled call that answers the requests.  Where a layer that maps zero to
something else follows (BatchNormalization's shift, a sigmoid), a channel is measured
where the next layer reads it instead: a unit that is zero after its ReLU can still feed
that layer a constant, which removing it would drop.  The statistics are kept as
exponential moving averages per removable channel (what :mod:`kerasprune.structured` can
cut), and read normalised by their group's mean, so that one threshold means the same in
a 16-filter convolution and a 1024-unit layer.
"""
from __future__ import annotations

import math
import numbers
import threading

import numpy as np

from ..backend import keras, require_graph_model, tf
from ..checks import number
from ..errors import ConfigError, FileError, ModelError
from ..structured import ChannelGraph, activation_points, analyze
from ..structured.importance import masked_sums
from ..structured.rules import PASS_THROUGH

#: what a unit's activity is measured by
STATISTICS = ("mean", "firing")


class UsageMonitor:
    """Per-channel activity of ``model`` on the batches it serves, thread-safe.

    ``decay`` is the weight the running average keeps at each observed batch (0.8: a
    batch moves it a fifth of the way).  ``statistic`` chooses what :meth:`scores` reads:
    ``"mean"`` |activation| or ``"firing"``, the share of nonzero activations (1 - APoZ).
    """

    def __init__(self, model: keras.Model, *, statistic: str = "mean", decay: float = 0.8,
                 graph: ChannelGraph | None = None) -> None:
        self.decay = self.check_settings(statistic, decay)
        self.statistic = statistic
        self.graph = graph or analyze(self.check_model(model))
        if not self.graph.channels:
            raise ConfigError(f"UsageMonitor: model '{model.name}' has no removable channels "
                              f"(see kerasprune.structured.analyze(model).describe()).")
        points = _as_read(self.graph, activation_points(self.graph))
        self._ids = [ids for _, ids in points]
        self._model = keras.Model(model.inputs, [model.output, *(t for t, _ in points)])
        self.channel_ids = np.array(sorted(c.id for c in self.graph.channels), dtype=np.int64)
        self._index = {int(i): k for k, i in enumerate(self.channel_ids)}
        # where each activation point's channels go among channel_ids (-1: not removable)
        columns = [np.array([self._index.get(int(i), -1) for i in ids]) for ids in self._ids]
        flat = np.concatenate(columns)
        segments = np.where(flat >= 0, flat, len(self.channel_ids))  # one bin for the rest
        counts = np.maximum(np.bincount(segments, minlength=len(self.channel_ids) + 1), 1)
        self._groups = {key: np.array([self._index[c.id] for c in channels])
                        for key, channels in self.graph.groups().items()}
        self._lock = threading.Lock()
        self.mean = np.zeros(len(self.channel_ids))
        self.firing = np.zeros(len(self.channel_ids))
        self.observed = 0  # batches folded into the averages

        spec = tf.TensorSpec((None, *model.input_shape[1:]), model.input.dtype)

        bins, scale = tf.constant(segments, tf.int32), tf.constant(1.0 / counts, tf.float32)

        @tf.function(input_signature=[spec])
        def call(x):
            """The outputs, and per channel the batch's mean |a| and firing rate."""
            outs = self._model(x, training=False)
            stats = [_channel_means(a, getattr(a, "_keras_mask", None)) for a in outs[1:]]
            per_channel = [tf.math.unsorted_segment_sum(tf.concat(v, 0), bins, len(counts)) * scale
                           for v in zip(*stats)]
            return outs[0], per_channel[0][:-1], per_channel[1][:-1]

        self._call = call

    @staticmethod
    def check_model(model: keras.Model, where: str = "UsageMonitor") -> keras.Model:
        """``model`` if it can be served and watched: built, one input, one output."""
        model = require_graph_model(model, where, "activation-based pruning")
        if not model.built or not model.inputs:
            raise ModelError(f"{where}: model '{model.name}' is not built; build the model first "
                             "(start it with keras.Input(shape), or call model.build(input_shape)).")
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ModelError(f"{where}: model '{model.name}' has {len(model.inputs)} input(s) and "
                             f"{len(model.outputs)} output(s); batches are served to models of one "
                             "input and one output (as to_tflite exports them): serve each output's "
                             "branch as a model of its own.")
        return model

    @staticmethod
    def check_settings(statistic: str, decay: float, where: str = "UsageMonitor") -> float:
        """The decay, once ``statistic`` and ``decay`` are known to be usable."""
        if statistic not in STATISTICS:
            raise ConfigError(f"{where}: statistic must be one of {', '.join(STATISTICS)}, got "
                              f"{statistic!r}.")
        return number(decay, f"{where}: decay", low=0.0, high=1.0, high_open=True)

    def __call__(self, x) -> np.ndarray:
        """Serve ``x`` with the full model and fold the batch's statistics in."""
        return self.probe(x)[0]

    def probe(self, x) -> tuple[np.ndarray, int]:
        """:meth:`__call__`, and the number of batches observed with this one (a decision
        due at that count is this batch's, whatever other threads observed since)."""
        y, mean, firing = self._call(x)
        return y.numpy(), self.observe(mean.numpy(), firing.numpy())

    def observe(self, mean: np.ndarray, firing: np.ndarray) -> int:
        """Fold one batch's mean |a| and firing rate per channel (of ``channel_ids``) in;
        the batches observed, this one included."""
        with self._lock:
            keep = self.decay if self.observed else 0.0
            self.mean = keep * self.mean + (1 - keep) * mean
            self.firing = keep * self.firing + (1 - keep) * firing
            self.observed += 1
            return self.observed

    def scores(self) -> dict[int, float]:
        """Each channel's activity divided by its group's mean activity (1.0: average)."""
        with self._lock:
            values = (self.mean if self.statistic == "mean" else self.firing).copy()
        out = np.zeros_like(values)
        for columns in self._groups.values():
            scale = values[columns].mean()
            out[columns] = values[columns] / scale if scale > 0 else 0.0
        return {int(i): float(v) for i, v in zip(self.channel_ids, out)}

    def groups(self) -> dict[tuple[str, ...], list[int]]:
        """The channel ids of each group of coupled layers."""
        return {key: [int(self.channel_ids[c]) for c in cols] for key, cols in self._groups.items()}

    def state(self) -> dict:
        with self._lock:
            return {"statistic": self.statistic, "decay": self.decay, "observed": self.observed,
                    "channel_ids": self.channel_ids.tolist(), "mean": self.mean.tolist(),
                    "firing": self.firing.tolist()}

    def restore(self, state: object, where: str) -> None:
        """Take the averages of :meth:`state`, for the same model's channels; a state that is
        malformed (FileError) or another model's (ConfigError) changes nothing."""
        keys = ("channel_ids", "mean", "firing", "observed")
        if (not isinstance(state, dict) or any(k not in state for k in keys)
                or not isinstance(state["channel_ids"], list)):
            raise FileError(f"{where}: not a saved state (its monitor needs {', '.join(keys)}).")
        if state["channel_ids"] != self.channel_ids.tolist():
            raise ConfigError(f"{where}: the saved statistics are for another model's channels "
                              f"({len(state['channel_ids'])} saved, {len(self.channel_ids)} here); "
                              "restore them into the model they were saved from.")
        n = len(self.channel_ids)
        if not are_counts(state["observed"]) or not all(
                isinstance(v, list) and len(v) == n and all(_is_number(a) for a in v)
                for v in (state["mean"], state["firing"])):
            raise FileError(f"{where}: not a saved state (the monitor's mean and firing must be "
                            f"{n} numbers each, observed a count).")
        with self._lock:
            self.mean = np.asarray(state["mean"], float)
            self.firing = np.asarray(state["firing"], float)
            self.observed = state["observed"]


def are_counts(*values: object) -> bool:
    """Whether every value is a whole number >= 0 (a saved counter, not True or 1.5)."""
    return all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _channel_means(a: tf.Tensor, mask: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor]:
    """Per channel of ``a``, the mean |a| and the share of nonzero a over the batch's
    positions ``mask`` keeps, in float32 whatever the model computes in."""
    a = tf.cast(a, tf.float32)
    means = []
    for values in (tf.abs(a), tf.cast(a != 0.0, tf.float32)):
        sums, kept = masked_sums(values, mask)
        means.append(tf.math.divide_no_nan(tf.reduce_sum(sums, 0), tf.reduce_sum(kept, 0)))
    return tuple(means)


def _as_read(graph: ChannelGraph, points: list[tuple[object, np.ndarray]]) -> list[tuple[object, np.ndarray]]:
    """``points`` with each tensor replaced by where the next layers read its channels, on
    the branches where a channel-by-channel layer on the way maps zero to something else."""
    nodes = {id(node) for depth in graph.model._nodes_by_depth.values() for node in depth}
    out = []
    for tensor, ids in points:
        ends = _ends(graph, tensor, nodes)
        read = [end for end, changed in ends if changed]
        if not all(changed for _, changed in ends):
            read.append(tensor)
        out += [(t, ids) for t in {id(t): t for t in read}.values()]
    return out


def _ends(graph: ChannelGraph, tensor, nodes: set[int]) -> list[tuple[object, bool]]:
    """Per branch from ``tensor``, the tensor a layer that makes or joins channels reads
    (or the model returns), and whether a layer on the way maps zero to something else."""
    readers = [node for node in tensor._keras_history.layer._outbound_nodes
               if id(node) in nodes and any(t is tensor for t in node.keras_inputs)]
    if not readers:
        return [(tensor, False)]
    out = []
    for node in readers:
        ids = graph.node_ids.get(node.layer.name)
        if ids is None or len(ids[0]) != 1 or not np.array_equal(ids[0][0], ids[1][0]):
            out.append((tensor, False))  # makes, joins or repeats channels: it reads them here
            continue
        shifts = not _keeps_zero(node.layer)
        out += [(end, changed or shifts)
                for end, changed in _ends(graph, tf.nest.flatten(node.outputs)[0], nodes)]
    return out


def _keeps_zero(layer: keras.layers.Layer) -> bool:
    """Whether the channel-by-channel ``layer`` surely maps zero to zero (pooling, dropout,
    ReLU; an Activation whose function does).  Any other (BatchNormalization, a depthwise
    bias, a registered custom layer) is taken to shift it."""
    if isinstance(layer, keras.layers.Activation):
        return not np.any(layer.activation(tf.zeros((1, 1))).numpy())
    return isinstance(layer, PASS_THROUGH)
