"""Structured pruning: the shrunk model computes what the masked model computes.

Each model is pruned by 30-50% in every removable set (by L1 norm), then masked and
shrunk with the same plan; their outputs must agree within 1e-5 on random inputs.
"""
from __future__ import annotations

import numpy as np
import pytest

from kerasprune import metrics
from kerasprune.backend import keras
from kerasprune.structured import analyze, mask, plan_channels, shrink

L = keras.layers


def resnet_style():
    inputs = keras.Input((10, 10, 3))
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU()(x)
    for b in range(2):
        y = L.Conv2D(8, 3, padding="same", name=f"b{b}_a")(x)
        y = L.BatchNormalization(name=f"b{b}_a_bn")(y)
        y = L.ReLU()(y)
        y = L.Conv2D(8, 3, padding="same", name=f"b{b}_b")(y)
        y = L.BatchNormalization(name=f"b{b}_b_bn")(y)
        x = L.ReLU()(L.Add()([x, y]))
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(4, activation="softmax", name="logits")(x))


def densenet_style():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", name="stem")(inputs)
    for b in range(3):
        y = L.BatchNormalization(name=f"d{b}_bn")(x)
        y = L.Conv2D(4, 3, padding="same", activation="relu", name=f"d{b}_conv")(y)
        x = L.Concatenate(name=f"d{b}_cat")([x, y])
    x = L.Conv2D(5, 1, name="transition")(x)
    x = L.AveragePooling2D()(x)
    x = L.GlobalMaxPooling2D()(x)
    return keras.Model(inputs, L.Dense(3, name="logits")(x))


def flatten_cnn():
    inputs = keras.Input((12, 12, 1))
    x = L.Conv2D(6, 3, activation="relu", name="c1")(inputs)
    x = L.MaxPooling2D()(x)
    x = L.SeparableConv2D(8, 3, activation="relu", name="sep")(x)
    x = L.Flatten()(x)
    x = L.Dense(20, activation="relu", name="fc1")(x)
    x = L.Dropout(0.5)(x)
    return keras.Model(inputs, L.Dense(10, activation="softmax", name="logits")(x))


def squeeze_excite():
    """A gate computed from the features themselves, reshaped to multiply them back."""
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    s = L.Dense(4, activation="relu", name="squeeze")(L.GlobalAveragePooling2D()(x))
    s = L.Reshape((1, 1, 8), name="se_reshape")(L.Dense(8, activation="sigmoid", name="excite")(s))
    x = L.Multiply(name="gate")([x, s])
    return keras.Model(inputs, L.Dense(3, name="logits")(L.GlobalAveragePooling2D()(x)))


def lstm_model():
    inputs = keras.Input((9,), dtype="int32")
    x = L.Embedding(30, 12, name="embedding")(inputs)
    x = L.LSTM(10, return_sequences=True, name="lstm1")(x)
    x = L.GRU(8, name="gru")(x)
    return keras.Model(inputs, L.Dense(2, activation="softmax", name="logits")(x))


def bidirectional_model():
    inputs = keras.Input((9,), dtype="int32")
    x = L.Embedding(30, 12, name="embedding")(inputs)
    x = L.Bidirectional(L.LSTM(10, return_sequences=True), name="bilstm")(x)
    x = L.Bidirectional(L.GRU(6), name="bigru")(x)
    return keras.Model(inputs, L.Dense(2, activation="softmax", name="logits")(x))


def attention_model():
    inputs = keras.Input((6, 8))
    x = L.Dense(16, activation="relu", name="proj")(inputs)
    x = L.MultiHeadAttention(4, 5, name="mha")(x, x)
    x = L.Dense(12, activation="relu", name="ff")(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, L.Dense(3, name="logits")(x))


def _inputs(model, n=6):
    spec = model.inputs[0]
    rng = np.random.default_rng(1)
    if spec.dtype.is_integer:
        return rng.integers(0, 30, size=(n, *spec.shape[1:])).astype("int32")
    return rng.standard_normal((n, *spec.shape[1:])).astype("float32")


def _randomize_batchnorm(model):
    """Non-trivial BN statistics, so a channel left behind would show."""
    rng = np.random.default_rng(2)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape) if i in (0, 3) else rng.normal(0, 0.5, w.shape)
                               for i, w in enumerate(layer.get_weights())])


@pytest.mark.parametrize("build, ratio, expect", [
    (resnet_style, 0.5, {"stem, b0_b, b1_b": "4/8", "b0_a": "4/8"}),
    (densenet_style, 0.5, {"stem": "3/6", "d2_conv": "2/4", "transition": "3/5"}),
    (flatten_cnn, 0.3, {"c1": "5/6", "sep": "6/8", "fc1": "14/20"}),
    (squeeze_excite, 0.5, {"conv, excite": "4/8", "squeeze": "2/4"}),
    (lstm_model, 0.3, {"embedding": "9/12", "lstm1": "7/10", "gru": "6/8"}),
    (bidirectional_model, 0.3, {"embedding": "9/12", "bilstm": "14/20", "bigru": "9/12"}),
    (attention_model, 0.5, {"proj": "8/16", "mha": "8/16", "mha heads": "2/4", "ff": "6/12"}),
])
def test_the_shrunk_model_computes_what_the_masked_model_computes(build, ratio, expect):
    keras.utils.set_random_seed(0)
    model = build()
    _randomize_batchnorm(model)
    graph = analyze(model)
    plan = plan_channels(model, ratio, graph=graph)
    summary = plan.summary(graph)
    for key, value in expect.items():
        assert summary[key.replace("stem, b0_b, b1_b", "b0_b, b1_b, stem")] == value
    masked, small = mask(model, plan, graph), shrink(model, plan, graph)
    x = _inputs(model)
    np.testing.assert_allclose(small.predict(x, verbose=0), masked.predict(x, verbose=0), atol=1e-5)
    assert np.max(np.abs(masked.predict(x, verbose=0) - model.predict(x, verbose=0))) > 1e-4
    assert metrics.count_params(small) < metrics.count_params(model)
    assert metrics.count_macs(small).dense < metrics.count_macs(model).dense
    # pruning nothing changes nothing
    same = shrink(model, plan_channels(model, 0.0, graph=graph), graph)
    np.testing.assert_allclose(same.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
