"""The batches a user hands to kerasprune, checked before they are used.

A dataset that is empty, unbatched, or labelled past the model's outputs would otherwise
give a bare TensorFlow error deep in a call, or worse, a silently wrong score: sparse
cross-entropy on CPU returns NaN for a label past the outputs and accuracy just misses it.
"""
from __future__ import annotations

import numpy as np

from .backend import keras, tf
from .errors import ConfigError


def labeled(dataset: object, model: keras.Model, where: str, *, classes: bool = True) -> tf.data.Dataset:
    """``dataset`` if it is a non-empty pipeline of ``(inputs, labels)`` batches that ``model``
    reads, with class ids inside its outputs (when ``classes``: a classifier's labels, not a
    regression's targets); else a ConfigError saying which.

    Peeks at the first batch, which starts an iterator of its own: meant for held-out data.
    A pipeline whose order must not move (training data) is checked batch by batch by its
    reader with :func:`check_batch`.  A label past the outputs would otherwise score or
    train silently wrong (sparse cross-entropy on CPU gives NaN; accuracy just misses)."""
    spec = getattr(dataset, "element_spec", None)
    if not isinstance(dataset, tf.data.Dataset) or not isinstance(spec, tuple) or len(spec) != 2:
        parts = f" of {len(spec)} parts" if isinstance(spec, tuple) else ""
        raise ConfigError(f"{where}: expected a tf.data.Dataset of (inputs, labels) batches, such as "
                          f"kerasprune.data.load(...).val, got {type(dataset).__name__}{parts}.")
    first = next(iter(dataset.take(1)), None)
    if first is None:
        raise ConfigError(f"{where}: the dataset is empty; pass batches of (inputs, labels) "
                          "(a filter or take() may have removed them all).")
    check_batch(*first, model, where, classes=classes)
    return dataset


def check_batch(x, y, model: keras.Model, where: str, *, classes: bool = True) -> None:
    """One batch's inputs fit ``model`` and (``classes``) its labels are class ids it outputs."""
    inputs, outputs = getattr(model, "input_shape", None), getattr(model, "output_shape", None)
    if isinstance(x, tf.Tensor) and isinstance(inputs, tuple):  # one dense input
        expected, shape = tuple(inputs[1:]), tuple(x.shape[1:])
        if shape[-1:] == (1,) and len(shape) == len(expected) + 1:
            shape = shape[:-1]  # Keras drops a trailing axis of 1 ...
        elif expected[-1:] == (1,) and len(shape) + 1 == len(expected):
            shape = (*shape, 1)  # ... or adds one
        if len(shape) != len(expected) or any(e is not None and e != s for e, s in zip(expected, shape)):
            raise ConfigError(f"{where}: inputs of shape {tuple(x.shape)} do not fit model '{model.name}', "
                              f"which reads batches of {(None, *expected)}; batch the dataset "
                              "(dataset.batch(n)) or reshape its examples.")
    if not (classes and isinstance(y, tf.Tensor) and isinstance(outputs, tuple)) \
            or not (y.dtype.is_integer or y.dtype.is_floating):
        return
    y, units = y.numpy(), outputs[-1]
    if y.size == 0 or (units > 1 and y.ndim >= 2 and y.shape[-1] == units):  # one-hot
        return
    if not np.all(np.isfinite(y)):
        raise ConfigError(f"{where}: the labels hold NaN or infinity; clean the label column.")
    if np.any(y != np.round(y)):  # soft labels: no class ids to check
        return
    count = 2 if units == 1 else units
    if y.min() < 0 or y.max() >= count:
        bad = y[(y < 0) | (y >= count)].ravel()[:3]
        raise ConfigError(f"{where}: labels {bad.tolist()} are outside model '{model.name}''s "
                          f"{units} output(s) (class ids 0..{count - 1}); check the label column "
                          "and the model's num_classes.")
