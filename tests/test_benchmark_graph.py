"""What graph_stats reads from a .tflite file agrees with the Keras model it came from."""
from __future__ import annotations

import numpy as np

from kerasprune import export, metrics
from kerasprune.backend import keras
from kerasprune.benchmark import graph_stats


def _cnn(zero_fraction: float = 0.0) -> keras.Model:
    inputs = keras.Input((12, 12, 3))
    ones = {"bias_initializer": "ones"}  # the converter drops all-zero biases
    x = keras.layers.Conv2D(8, 3, name="c", **ones)(inputs)
    x = keras.layers.DepthwiseConv2D(3, name="dw", **ones)(x)
    x = keras.layers.Conv2D(16, 1, name="pw", **ones)(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(5, name="fc", **ones)(x))
    if zero_fraction:
        for name in ("pw", "fc"):
            kernel = model.get_layer(name).kernel
            value = kernel.numpy()
            value.reshape(-1)[: int(zero_fraction * value.size)] = 0.0
            kernel.assign(value)
    return model


def test_params_nonzeros_and_macs_match_the_keras_counts():
    model = _cnn(zero_fraction=0.9)
    stats = graph_stats(export.to_tflite(model).content)
    macs = metrics.count_macs(model)
    assert stats.params == metrics.count_params(model)
    assert stats.nonzero_params == metrics.count_nonzero_params(model)
    assert stats.macs == macs.dense
    assert stats.macs_effective == macs.effective
    assert stats.ops["CONV_2D"] == 2 and stats.ops["DEPTHWISE_CONV_2D"] == 1
    assert not stats.densified_at_load and stats.weight_type == "float32"


def test_a_sparse_conversion_is_seen_as_sparse_weights_behind_densify_ops():
    model = _cnn(zero_fraction=0.9)
    stats = graph_stats(export.to_tflite(model, sparse=True).content)
    assert stats.sparse_tensors >= 1 and stats.densified_at_load
    assert stats.params == metrics.count_params(model)  # dense shapes, not stored values
    assert stats.macs_effective == metrics.count_macs(model).effective
    dense = graph_stats(export.to_tflite(model).content)
    assert stats.weight_bytes < dense.weight_bytes


def test_lstm_macs_count_every_gate_at_every_step():
    inputs = keras.Input((7,), dtype="int32")
    x = keras.layers.Embedding(50, 4)(inputs)
    x = keras.layers.LSTM(6)(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    stats = graph_stats(export.to_tflite(model).content)
    assert stats.ops.get("UNIDIRECTIONAL_SEQUENCE_LSTM") == 1
    assert stats.macs == metrics.count_macs(model).dense
    # zero biases and initial states are not stored in the file
    assert np.isclose(stats.params, metrics.count_params(model), rtol=0.05)
