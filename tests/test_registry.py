"""Prunable weights come from tfmot's registry, each with the attribute it is read from."""
from __future__ import annotations

import pytest
from tensorflow_model_optimization.python.core.sparsity.keras.prunable_layer import PrunableLayer

from kerasprune.backend import keras
from kerasprune.errors import ModelError
from kerasprune.sparsity import registry

L = keras.layers


def _built(layer, shape):
    layer(keras.Input(shape))
    return layer


def _found(layer):
    return [(w.owner.name, w.attribute, tuple(w.variable.shape)) for w in registry.prunable_weights(layer)]


def test_dense_kernel_but_not_bias():
    assert _found(_built(L.Dense(3, name="d"), (4,))) == [("d", "kernel", (4, 3))]


def test_recurrent_cells_and_both_directions_of_bidirectional():
    lstm = _built(L.LSTM(2, name="l"), (5, 3))
    assert [a for _, a, _ in _found(lstm)] == ["kernel", "recurrent_kernel"]
    bi = _built(L.Bidirectional(L.LSTM(2)), (5, 3))
    assert registry.supports(bi)
    assert len(_found(bi)) == 4


def test_attention_projections_are_found_in_their_sublayers():
    mha = L.MultiHeadAttention(2, 4, name="mha")
    x = keras.Input((5, 8))
    mha(x, x)
    owners = [o for o, a, _ in _found(mha)]
    assert owners == ["query", "key", "value", "attention_output"]


def test_user_layers_implementing_prunable_layer_are_supported():
    class Scale(L.Layer, PrunableLayer):
        def build(self, shape):
            self.w = self.add_weight("w", shape=(shape[-1], 2))

        def call(self, x):
            return x @ self.w

        def get_prunable_weights(self):
            return [self.w]

    assert _found(_built(Scale(name="s"), (3,))) == [("s", "w", (3, 2))]


def test_unsupported_layers_get_an_error_that_says_how_to_fix_it():
    class Odd(L.Layer):
        def call(self, x):
            return x

    with pytest.raises(ModelError, match="'odd'.*not prunable.*PrunableLayer"):
        registry.prunable_weights(_built(Odd(name="odd"), (3,)))
