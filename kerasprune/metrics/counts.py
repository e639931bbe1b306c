"""Parameters, nonzeros and sparsity, counted the same way for every method's model.

Wrappers of pruning and quantization (tfmot's or kerasprune's) are looked through:
their bookkeeping (masks, thresholds, step counters) is not counted, and a kerasprune
wrapper's masked weights count as the zeros they compute with.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from ..backend import keras, require_tf_keras_model, tf

# Wrappers that are part of the architecture rather than pruning/quantization bookkeeping.
_ARCHITECTURAL_WRAPPERS = (keras.layers.Bidirectional, keras.layers.TimeDistributed)


def unwrap(layer: keras.layers.Layer) -> keras.layers.Layer:
    """The layer inside pruning/quantization wrappers (tfmot's or kerasprune's)."""
    while isinstance(layer, keras.layers.Wrapper) and not isinstance(layer, _ARCHITECTURAL_WRAPPERS):
        layer = layer.layer
    return layer


def leaf_layers(model: keras.Model) -> Iterable[keras.layers.Layer]:
    """Every layer of ``model`` with nested models flattened (wrappers kept)."""
    for layer in require_tf_keras_model(model, "metrics").layers:
        inner = unwrap(layer)
        if isinstance(inner, keras.Model):
            yield from leaf_layers(inner)
        else:
            yield layer


def measured_weights(layer: keras.layers.Layer) -> list[tf.Variable]:
    """The weights of ``layer`` that sparsity is measured on (rank >= 2, frozen or not)."""
    return [w for w in unwrap(layer).weights if len(w.shape) >= 2]


def effective_values(layer: keras.layers.Layer) -> Callable[[tf.Variable], np.ndarray]:
    """A lookup from a weight of ``layer`` to the value the layer computes with.

    A pruning wrapper that does not zero its variables (kerasprune's) says so through
    ``effective_weights()``; every other weight is its variable's value.
    """
    known = {}
    if hasattr(layer, "effective_weights"):
        known = {id(v): value for v, value in layer.effective_weights()}
    return lambda variable: known[id(variable)] if id(variable) in known else variable.numpy()


def measured_arrays(layer: keras.layers.Layer, value: Callable | None = None) -> list[np.ndarray]:
    """The measured weights of ``layer`` as it computes with them (``value``: a lookup)."""
    value = value or effective_values(layer)
    return [value(w) for w in measured_weights(layer)]


def layer_sparsity(model: keras.Model) -> dict[str, float]:
    """Fraction of zeros in each layer's prunable weights, for layers that have any."""
    result = {}
    for layer in leaf_layers(model):
        arrays = measured_arrays(layer)
        total = sum(a.size for a in arrays)
        if total:
            result[unwrap(layer).name] = sum(int(np.count_nonzero(a == 0)) for a in arrays) / total
    return result


def global_sparsity(model: keras.Model) -> float:
    """Fraction of zeros over all prunable weights of the model."""
    zeros = total = 0
    for layer in leaf_layers(model):
        for a in measured_arrays(layer):
            zeros += int(np.count_nonzero(a == 0))
            total += a.size
    return zeros / total if total else 0.0


def _model_weights(model: keras.Model) -> list[tuple[tf.Variable, Callable]]:
    seen, weights = set(), []
    for layer in leaf_layers(model):
        value = effective_values(layer)
        for w in unwrap(layer).weights:
            if id(w) not in seen:
                seen.add(id(w))
                weights.append((w, value))
    return weights


def count_params(model: keras.Model) -> int:
    """Every weight entry once, without wrapper bookkeeping."""
    return int(sum(np.prod(w.shape) for w, _ in _model_weights(model)))


def count_nonzero_params(model: keras.Model) -> int:
    return int(sum(np.count_nonzero(value(w)) for w, value in _model_weights(model)))
