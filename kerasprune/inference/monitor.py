"""What each unit does on live traffic: a running mean of |activation| and a firing rate.

The monitor adds, to the model that serves a batch, one output per activation point of
:func:`kerasprune.structured.activation_points` (after each ReLU, or at the layer that
makes a channel): the batch's mean |a| and its share of nonzero values, per channel.  So
the statistics come out of the same compiled call that answers the requests.  They are
kept as exponential moving averages per removable channel (what
:mod:`kerasprune.structured` can cut), and read normalised by their group's mean, so
that one threshold means the same in a 16-filter convolution and a 1024-unit layer.
"""
from __future__ import annotations

import threading

import numpy as np

from ..backend import keras, tf
from ..checks import number
from ..errors import ConfigError
from ..structured import ChannelGraph, activation_points, analyze

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
        self.graph = graph or analyze(model)
        if not self.graph.channels:
            raise ConfigError(f"UsageMonitor: model '{model.name}' has no removable channels "
                              f"(see kerasprune.structured.analyze(model).describe()).")
        points = activation_points(self.graph)
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
            flat = [tf.reshape(a, [-1, a.shape[-1]]) for a in outs[1:]]
            mean = tf.concat([tf.reduce_mean(tf.abs(a), 0) for a in flat], 0)
            firing = tf.concat([tf.reduce_mean(tf.cast(a != 0.0, tf.float32), 0) for a in flat], 0)
            per_channel = [tf.math.unsorted_segment_sum(v, bins, len(counts)) * scale
                           for v in (mean, firing)]
            return outs[0], per_channel[0][:-1], per_channel[1][:-1]

        self._call = call

    @staticmethod
    def check_settings(statistic: str, decay: float, where: str = "UsageMonitor") -> float:
        """The decay, once ``statistic`` and ``decay`` are known to be usable."""
        if statistic not in STATISTICS:
            raise ConfigError(f"{where}: statistic must be one of {', '.join(STATISTICS)}, got "
                              f"{statistic!r}.")
        return number(decay, f"{where}: decay", low=0.0, high=1.0, high_open=True)

    def __call__(self, x) -> np.ndarray:
        """Serve ``x`` with the full model and fold the batch's statistics in."""
        y, mean, firing = self._call(x)
        self.observe(mean.numpy(), firing.numpy())
        return y.numpy()

    def observe(self, mean: np.ndarray, firing: np.ndarray) -> None:
        """Fold one batch's mean |a| and firing rate per channel (of ``channel_ids``) in."""
        with self._lock:
            keep = self.decay if self.observed else 0.0
            self.mean = keep * self.mean + (1 - keep) * mean
            self.firing = keep * self.firing + (1 - keep) * firing
            self.observed += 1

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

    def restore(self, state: dict, where: str) -> None:
        """Take the averages of :meth:`state`, for the same model's channels."""
        if list(state.get("channel_ids", [])) != self.channel_ids.tolist():
            raise ConfigError(f"{where}: the saved statistics are for another model's channels "
                              f"({len(state.get('channel_ids', []))} saved, {len(self.channel_ids)} "
                              f"here); restore them into the model they were saved from.")
        with self._lock:
            self.mean = np.asarray(state["mean"], float)
            self.firing = np.asarray(state["firing"], float)
            self.observed = int(state["observed"])

