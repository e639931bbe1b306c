"""Accuracy, macro F1 and the loss: what a compressed model must keep."""
from __future__ import annotations

import numpy as np

from ..backend import keras, require_tf_keras_model, tf
from ..batches import labeled
from .counts import unwrap


def classification_scores(y_true: np.ndarray, y_pred: np.ndarray,
                          classes: np.ndarray | None = None) -> dict[str, float]:
    """Accuracy and macro F1 over ``classes`` (default: those in labels or predictions).

    Traffic narrowed to a few classes passes its own, so that a stray prediction of an
    absent class counts as an error, not as a class with F1 0.
    """
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(y_pred).reshape(-1)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"need equal, non-empty label arrays, got {y_true.shape} and {y_pred.shape}")
    f1s = []
    for c in np.union1d(y_true, y_pred) if classes is None else classes:
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {"accuracy": float(np.mean(y_true == y_pred)), "f1": float(np.mean(f1s))}


def predicted_classes(outputs: np.ndarray, like: np.ndarray | None = None,
                      threshold: float | None = None) -> np.ndarray:
    """The class of each output: argmax over the last axis, or for a single unit a
    threshold: ``threshold`` (the model's :func:`unit_threshold`) when known, else judged
    from the values (0.5 if they all lie in [0, 1], else 0), of ``like`` when given (e.g. the
    outputs another copy of the model is compared with)."""
    outputs = np.asarray(outputs)
    if outputs.shape[-1] > 1:
        return np.argmax(outputs, axis=-1)
    if threshold is None:
        like = outputs if like is None else np.asarray(like)
        threshold = 0.5 if like.min() >= 0 and like.max() <= 1 else 0.0
    return (outputs[..., 0] > threshold).astype(np.int64)


def output_activation(model: keras.Model) -> str | None:
    """The activation the model's output ends with (``linear`` for none), read from the
    layer that makes it (through pruning and QAT wrappers and nested models; ``tf.sigmoid``
    as an op), or None when that layer does not say (a reshape, a custom layer)."""
    layer = unwrap(model.outputs[0]._keras_history.layer)
    if isinstance(layer, keras.Model):
        return output_activation(layer)
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    symbol = getattr(layer, "symbol", None)  # TFOpLambda: "math.sigmoid", "nn.softmax", ...
    if symbol:
        name = symbol.split(".")[-1]
        return name if name in ("sigmoid", "softmax") else None
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None) if activation is not None else None


def unit_threshold(model: keras.Model) -> float | None:
    """Where a single output unit's class flips: 0.5 on a sigmoid's probability, 0 on a
    logit, None when the model does not say (then :func:`predicted_classes` judges from the
    values).  From the model, not a batch: logits of one batch can all lie in [0, 1]."""
    activation = output_activation(model)
    return None if activation is None else 0.5 if activation in ("sigmoid", "softmax") else 0.0


def label_classes(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Class ids shaped like ``predicted``: one-hot labels by their argmax."""
    labels = np.asarray(labels)
    if labels.ndim == predicted.ndim + 1 and labels.shape[-1] > 1:
        labels = np.argmax(labels, axis=-1)
    return labels.reshape(predicted.shape)


def hits(outputs: np.ndarray, labels: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Right or wrong, per example (``threshold``: :func:`predicted_classes`')."""
    predicted = predicted_classes(outputs, threshold=threshold)
    return predicted == label_classes(labels, predicted)


def evaluate(model: keras.Model, dataset: tf.data.Dataset) -> dict[str, float]:
    """Accuracy and macro F1 of ``model`` on a dataset of ``(x, y)`` batches (class ids or
    one-hot labels; softmax, sigmoid or logit outputs)."""
    model = require_tf_keras_model(model, "evaluate")
    dataset = labeled(dataset, model, "evaluate")
    labels, preds, threshold = [], [], unit_threshold(model)
    predict = tf.function(lambda x: model(x, training=False))
    for x, y in dataset:
        predicted = predicted_classes(predict(x).numpy(), threshold=threshold)
        preds.append(predicted)
        labels.append(label_classes(y.numpy(), predicted))
    return classification_scores(np.concatenate(labels), np.concatenate(preds))


def takes_class_ids(model: keras.Model) -> bool:
    """Whether the model's loss reads class ids (sparse categorical cross-entropy), so a
    label past its outputs is an error rather than a regression target."""
    loss = loss_of(model)
    return "sparse_categorical" in str(getattr(loss, "name", None) or getattr(loss, "__name__", ""))


class _BatchMean(keras.losses.Loss):
    """A loss function (what Keras makes of ``compile(loss="...")`` or a user's callable)
    as a ``Loss``: one number, the batch mean, as ``fit`` reports it."""

    def __init__(self, fn) -> None:
        super().__init__(name=getattr(fn, "__name__", "loss"))
        self.fn = fn

    def call(self, y_true, y_pred):
        y_true, y_pred = tf.convert_to_tensor(y_true), tf.convert_to_tensor(y_pred)
        if y_true.shape.rank == y_pred.shape.rank - 1 and y_pred.shape[-1] == 1:
            y_true = tf.expand_dims(y_true, -1)  # labels (n,) against one unit (n, 1), as fit lines them up
        return self.fn(y_true, y_pred)


def loss_of(model: keras.Model) -> keras.losses.Loss:
    """The model's compiled loss, else cross-entropy on its probabilities or logits."""
    compiled = getattr(model, "loss", None)
    if isinstance(compiled, str):
        compiled = keras.losses.get(compiled)
    if isinstance(compiled, keras.losses.Loss):
        return compiled
    if callable(compiled):
        return _BatchMean(compiled)
    logits = output_activation(model) not in ("sigmoid", "softmax")  # unsaid: logits, as before
    if (model.outputs[0].shape[-1] if model.outputs else None) == 1:  # one unit: two classes
        return keras.losses.BinaryCrossentropy(from_logits=logits)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=logits)
