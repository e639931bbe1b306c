"""What each layer costs at 4 bits, alone: the numbers bit allocation ranks layers by.

Two scores, registered as ``"layer"`` importances (higher keeps 8 bits):

* ``quantization_loss``: the validation loss with only that layer's weights on the 4-bit
  grid, minus the loss with none; measured, so it also gives the accuracy change.  One
  evaluation per layer, no retraining.
* ``fisher``: ``1/2 * sum(F * (w - q4(w))**2)``, the diagonal-Fisher estimate of the same
  loss change, with ``F`` the squared batch gradients.  One backward pass per batch for
  all layers: the cheap score for models with many layers.

Embeddings count like any layer: in the text models they hold most of the bytes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..backend import keras, require_graph_model, tf
from ..checks import number
from ..batches import labeled
from ..errors import ConfigError
from ..importance import register
from ..metrics import loss_of
from ..metrics.quality import hits, takes_class_ids, unit_threshold
from .grid import Quantizable, plain_layer, quantizable, quantize

SCORES = ("quantization_loss", "fisher")


@dataclass
class LayerSensitivity:
    """One quantizable layer: its size at each width and what 4 bits cost it."""

    layer: str
    params: int
    bytes_8: int  # its quantizable weights stored at 8 bits (values and scales)
    bytes_4: int  # ... at 4 bits where TFLite can hold 4 (depthwise kernels keep 8)
    loss_change: float | None = None  # validation loss, this layer alone at 4 bits
    accuracy_change: float | None = None  # validation accuracy (fraction), likewise
    fisher: float | None = None

    @property
    def fixed(self) -> bool:
        """Nothing of it can take 4 bits: it keeps 8 whatever is allocated."""
        return self.bytes_4 == self.bytes_8

    def as_dict(self) -> dict:
        return asdict(self)


def _layers(model: keras.Model) -> dict[str, list[Quantizable]]:
    by_layer: dict[str, list[Quantizable]] = {}
    for q in quantizable(model):
        by_layer.setdefault(q.layer, []).append(q)
    if not by_layer:
        raise ConfigError(f"'{model.name}' has no layer the mixed export can quantize (Dense, "
                          "Conv1D/2D, depthwise or separable convolutions, Embedding).")
    for name in by_layer:  # refused before any evaluation: a wrapped layer reads other weights
        plain_layer(model, name, "sensitivity")
    return by_layer


def _variable(model: keras.Model, q: Quantizable) -> tf.Variable:
    return getattr(plain_layer(model, q.layer, "sensitivity"), q.attr)


def _at4(q: Quantizable) -> int:
    return 4 if 4 in q.bits else 8


def measure(model: keras.Model, data: tf.data.Dataset, batches: int = 8,
            scores: tuple[str, ...] = SCORES) -> list[LayerSensitivity]:
    """The sensitivity table of ``model`` on ``batches`` batches of ``data`` ((x, y) pairs,
    e.g. ``Data.val``), with the ``scores`` asked for, in layer order."""
    model = require_graph_model(model, "sensitivity", "per-layer quantization sensitivity")
    batches = number(batches, "sensitivity(batches=)", low=1, integer=True)
    unknown = set(scores) - set(SCORES)
    if unknown:
        raise ConfigError(f"sensitivity: unknown score(s) {', '.join(sorted(unknown))}; "
                          f"the scores are {', '.join(SCORES)}.")
    if not isinstance(data, tf.data.Dataset):
        raise ConfigError("sensitivity needs data: a tf.data.Dataset of (inputs, labels) batches, "
                          f"e.g. Data.val; got {type(data).__name__}.")
    data = labeled(data, model, "sensitivity", classes=takes_class_ids(model))
    by_layer = _layers(model)
    sample = list(data.take(batches))
    table = [LayerSensitivity(name, sum(q.params for q in qs),
                              sum(q.stored_bytes(8) for q in qs),
                              sum(q.stored_bytes(_at4(q)) for q in qs))
             for name, qs in by_layer.items()]
    if "quantization_loss" in scores:
        changes = _quantization_loss(model, by_layer, sample)
        for row in table:
            row.loss_change, row.accuracy_change = changes.get(row.layer, (None, None))
    if "fisher" in scores:
        fisher = _fisher(model, by_layer, sample)
        for row in table:
            row.fisher = fisher[row.layer]
    return table


def _quantization_loss(model, by_layer, sample) -> dict[str, tuple[float, float]]:
    loss_fn, threshold = loss_of(model), unit_threshold(model)
    forward = tf.function(lambda x: model(x, training=False))

    def evaluate() -> tuple[float, float]:
        loss = correct = count = 0.0
        for x, y in sample:
            out = forward(x)
            right = hits(out.numpy(), y.numpy(), threshold)
            loss += float(loss_fn(y, out)) * len(right)
            correct, count = correct + float(np.sum(right)), count + len(right)
        return loss / count, correct / count

    base_loss, base_accuracy = evaluate()
    changes = {}
    for name, qs in by_layer.items():
        if all(4 not in q.bits for q in qs):
            continue  # fixed at 8 bits: nothing to measure
        saved = [_variable(model, q).numpy() for q in qs]
        try:
            for q, value in zip(qs, saved):
                _variable(model, q).assign(quantize(value, _at4(q), q.channel_axes))
            loss, accuracy = evaluate()
        finally:
            for q, value in zip(qs, saved):
                _variable(model, q).assign(value)
        changes[name] = (loss - base_loss, accuracy - base_accuracy)
    return changes


def _fisher(model, by_layer, sample) -> dict[str, float]:
    loss_fn = loss_of(model)
    variables = {(q.layer, q.attr): _variable(model, q) for qs in by_layer.values() for q in qs}
    squared = {key: np.zeros(v.shape, np.float64) for key, v in variables.items()}
    for x, y in sample:
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=False))
        for key, grad in zip(variables, tape.gradient(loss, list(variables.values()))):
            if grad is not None:
                squared[key] += np.square(tf.convert_to_tensor(grad).numpy())
    fisher = {}
    for name, qs in by_layer.items():
        total = 0.0
        for q in qs:
            value = variables[(q.layer, q.attr)].numpy()
            error = value - quantize(value, _at4(q), q.channel_axes)
            total += 0.5 * float(np.sum(squared[(q.layer, q.attr)] / len(sample) * error ** 2))
        fisher[name] = total
    return fisher


class _LayerScore:
    """A sensitivity column as a ``"layer"`` importance: layer name -> score."""

    unit = "layer"

    def __init__(self, name: str, column: str) -> None:
        self.name, self.column = name, column

    def scores(self, model: keras.Model, data: tf.data.Dataset | None = None,
               batches: int = 8) -> dict[str, float]:
        rows = measure(model, data, batches, scores=(self.name,))
        return {row.layer: getattr(row, self.column) for row in rows if not row.fixed}


register(_LayerScore("quantization_loss", "loss_change"))
register(_LayerScore("fisher", "fisher"))
