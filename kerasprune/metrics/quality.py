"""Accuracy, macro F1 and the loss: what a compressed model must keep."""
from __future__ import annotations

import numpy as np

from ..backend import keras, require_tf_keras_model, tf
from ..data import labeled


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


def evaluate(model: keras.Model, dataset: tf.data.Dataset) -> dict[str, float]:
    """Accuracy and macro F1 of ``model`` on a dataset of ``(x, y)`` batches."""
    model = require_tf_keras_model(model, "evaluate")
    dataset = labeled(dataset, model, "evaluate")
    labels, preds = [], []
    predict = tf.function(lambda x: tf.argmax(model(x, training=False), axis=-1))
    for x, y in dataset:
        labels.append(y.numpy())
        preds.append(predict(x).numpy())
    return classification_scores(np.concatenate(labels), np.concatenate(preds))


def loss_of(model: keras.Model) -> keras.losses.Loss:
    """The model's compiled loss, else cross-entropy on its probabilities or logits."""
    if isinstance(getattr(model, "loss", None), (str, keras.losses.Loss)):
        return keras.losses.get(model.loss)
    last = model.layers[-1]
    probabilities = getattr(getattr(last, "activation", None), "__name__", "") == "softmax" \
        or isinstance(last, keras.layers.Softmax)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=not probabilities)
