"""Counts on hand-made models whose parameters, zeros and MACs are known by hand."""
from __future__ import annotations

import numpy as np
import pytest

from kerasprune import metrics
from kerasprune.backend import keras

L = keras.layers


def _set(layer, **arrays):
    for name, value in arrays.items():
        getattr(layer, name).assign(np.asarray(value, dtype="float32"))


def test_dense_params_zeros_and_macs():
    inputs = keras.Input((4,))
    dense = L.Dense(3, name="d")
    model = keras.Model(inputs, dense(inputs))
    kernel = np.ones((4, 3))
    kernel[:2] = 0  # 6 of 12 kernel entries are zero
    _set(dense, kernel=kernel, bias=np.ones(3))
    assert metrics.count_params(model) == 15
    assert metrics.count_nonzero_params(model) == 9
    assert metrics.global_sparsity(model) == 0.5
    assert metrics.layer_sparsity(model) == {"d": 0.5}
    macs = metrics.count_macs(model)
    assert (macs.dense, macs.effective) == (12, 6)


def test_dense_on_sequences_counts_every_time_step():
    inputs = keras.Input((7, 4))
    model = keras.Model(inputs, L.Dense(3)(inputs))
    assert metrics.count_macs(model).dense == 7 * 4 * 3


def test_convolutions():
    inputs = keras.Input((8, 8, 2))
    x = L.Conv2D(4, 3, name="conv")(inputs)  # valid: 6x6 outputs
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)  # 6x6x4
    x = L.SeparableConv2D(5, 3, strides=2, padding="same", name="sep")(x)  # 3x3 outputs
    model = keras.Model(inputs, x)
    per_layer = metrics.count_macs(model).per_layer
    assert per_layer["conv"][0] == 36 * 3 * 3 * 2 * 4
    assert per_layer["dw"][0] == 36 * 3 * 3 * 4
    assert per_layer["sep"][0] == 9 * (3 * 3 * 4) + 9 * (4 * 5)
    assert metrics.count_params(model) == (72 + 4) + (36 + 4) + (36 + 20 + 5)


def test_recurrent_layers_use_both_kernels_at_every_step():
    inputs = keras.Input((5, 3))
    lstm = L.LSTM(2, name="lstm")
    bi = L.Bidirectional(L.LSTM(2), name="bi")
    model = keras.Model(inputs, [lstm(inputs), bi(inputs)])
    per_layer = metrics.count_macs(model).per_layer
    assert per_layer["lstm"][0] == 5 * (3 * 8 + 2 * 8)
    assert per_layer["bi"][0] == 2 * per_layer["lstm"][0]
    assert metrics.count_params(model) == 3 * (24 + 16 + 8)


def test_a_recurrent_layer_given_its_initial_state_counts_its_sequence_steps():
    inputs, h, c = keras.Input((5, 3)), keras.Input((2,)), keras.Input((2,))
    model = keras.Model([inputs, h, c], L.LSTM(2, name="lstm")(inputs, initial_state=[h, c]))
    assert metrics.count_macs(model).per_layer["lstm"][0] == 5 * (3 * 8 + 2 * 8)


def test_attention_along_one_axis_pairs_positions_along_that_axis_only():
    inputs = keras.Input((3, 5, 4))  # attention over the 5 positions of each of 3 rows
    mha = L.MultiHeadAttention(num_heads=2, key_dim=6, attention_axes=(2,), name="mha")
    model = keras.Model(inputs, mha(inputs, inputs))
    projections = 4 * 15 * (4 * 2 * 6)
    assert metrics.count_macs(model).dense == projections + 3 * 5 * 5 * 2 * (6 + 6)


def test_attention_projections_and_products():
    inputs = keras.Input((4, 8))
    mha = L.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")
    model = keras.Model(inputs, mha(inputs, inputs))
    projections = 3 * (4 * 8 * 2 * 4) + 4 * (2 * 4 * 8)
    products = 2 * (4 * 4 * 2 * 4)
    assert metrics.count_macs(model).dense == projections + products


def test_cross_attention_uses_the_key_length():
    query, value = keras.Input((4, 8)), keras.Input((6, 8))
    mha = L.MultiHeadAttention(num_heads=1, key_dim=2, name="mha")
    model = keras.Model([query, value], mha(query, value))
    expected = 4 * 16 + 6 * 16 + 6 * 16 + 4 * 16 + 2 * (4 * 6 * 2)
    assert metrics.count_macs(model).dense == expected


def test_embedding_is_a_lookup_but_its_table_is_prunable():
    inputs = keras.Input((5,), dtype="int32")
    embedding = L.Embedding(10, 4, name="emb")
    model = keras.Model(inputs, embedding(inputs))
    table = np.ones((10, 4))
    table[:5] = 0
    _set(embedding, embeddings=table)
    assert metrics.count_macs(model).dense == 0
    assert metrics.global_sparsity(model) == 0.5


def test_biases_and_normalization_are_not_prunable():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, L.BatchNormalization()(L.Dense(3)(inputs)))
    assert [tuple(w.shape) for layer in model.layers for w in metrics.measured_weights(layer)] == [(4, 3)]


class _Scale(L.Layer):
    def build(self, shape):
        self.kernel = self.add_weight("kernel", shape=(shape[-1], shape[-1]))

    def call(self, x):
        return x @ self.kernel


def test_unknown_layers_with_kernels_are_reported_not_silently_zero():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, _Scale(name="custom")(inputs))
    with pytest.warns(UserWarning, match="custom"):
        macs = metrics.count_macs(model)
    assert macs.unknown_layers == ["custom"]


def test_registered_custom_layers_are_counted():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, _Scale(name="custom")(inputs))
    metrics.register_macs(_Scale)(lambda layer, node, value: ([(1, value(layer.kernel))], 0))
    try:
        assert metrics.count_macs(model).dense == 9
    finally:
        metrics.macs.MAC_RULES.pop(_Scale)


def test_pruning_wrappers_are_not_counted_as_params():
    import tensorflow_model_optimization as tfmot

    inputs = keras.Input((4,))
    model = keras.Model(inputs, L.Dense(3)(L.Dense(5)(inputs)))
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model)
    assert metrics.count_params(pruned) == metrics.count_params(model) == 25 + 18
    assert metrics.count_macs(pruned).dense == 4 * 5 + 5 * 3


def test_subclassed_models_get_a_specific_error():
    class Sub(keras.Model):
        def call(self, x):
            return x

    from kerasprune.errors import ModelError

    with pytest.raises(ModelError, match="subclassed"):
        metrics.count_macs(Sub())


def test_accuracy_and_macro_f1():
    scores = metrics.classification_scores(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    assert scores["accuracy"] == 0.75
    assert scores["f1"] == pytest.approx((2 / 3 + 4 / 5) / 2)


def test_evaluate_runs_the_model_over_a_dataset():
    from kerasprune.backend import tf

    inputs = keras.Input((2,))
    model = keras.Model(inputs, L.Softmax()(inputs))  # predicts the larger coordinate
    x = np.array([[1, 0], [0, 1], [2, 1], [0, 3]], dtype="float32")
    ds = tf.data.Dataset.from_tensor_slices((x, np.array([0, 1, 1, 1]))).batch(3)
    assert metrics.evaluate(model, ds)["accuracy"] == 0.75


def test_a_single_unit_is_read_by_the_models_own_activation():
    """A logit's class flips at 0 even in a batch whose logits all lie in [0, 1]; an
    uncompiled one-unit model's default loss is binary cross-entropy on what it outputs."""
    from kerasprune.backend import tf
    from kerasprune.metrics.quality import loss_of

    inputs = keras.Input((1,))
    logit = keras.Model(inputs, L.Dense(1, kernel_initializer="ones", name="logit")(inputs))
    x = np.array([[0.1], [0.3], [0.6], [0.9]], dtype="float32")  # all positive logits: class 1
    ds = tf.data.Dataset.from_tensor_slices((x, np.ones(4, "int64"))).batch(4)
    assert metrics.evaluate(logit, ds)["accuracy"] == 1.0
    probability = keras.Model(inputs, L.Dense(1, activation="sigmoid")(inputs))
    loss = loss_of(logit)
    assert isinstance(loss, keras.losses.BinaryCrossentropy) and loss.get_config()["from_logits"]
    assert not loss_of(probability).get_config()["from_logits"]
    assert float(loss(np.ones((4, 1)), logit(x))) > 0  # labels of one unit, as fit lines them up

    from kerasprune import prune
    from kerasprune.metrics.quality import unit_threshold

    as_op = keras.Model(inputs, tf.sigmoid(L.Dense(1)(inputs)))
    nested = keras.Model(inputs, keras.Sequential([keras.Input((1,)), L.Dense(1, activation="sigmoid")])(inputs))
    unsaid = keras.Model(inputs, L.Reshape((1,))(L.Dense(1, activation="sigmoid")(inputs)))
    assert [unit_threshold(m) for m in (prune(probability), as_op, nested, logit, unsaid)] == [0.5, 0.5, 0.5, 0.0, None]


def test_nested_layers_are_keyed_by_their_path_and_subclasses_by_their_own_rule():
    class Upsample(L.Conv2DTranspose):  # a user's transposed convolution: not a Conv2D
        pass

    inputs = keras.Input((6,))
    inner = keras.Sequential([keras.Input((6,)), L.Dense(5, name="fc")], name="backbone")
    model = keras.Model(inputs, L.Dense(6, name="fc")(inner(inputs)))
    macs = metrics.count_macs(model)
    assert macs.per_layer == {"backbone/fc": (30, 30), "fc": (30, 30)} and macs.dense == 60
    image = keras.Input((4, 4, 2))
    up = keras.Model(image, Upsample(3, 2, strides=2, name="up")(image))
    assert metrics.count_macs(up).dense == 4 * 4 * (2 * 2 * 2 * 3)  # per input position


def test_a_layer_shared_with_another_model_is_counted_once():
    import tensorflow_model_optimization as tfmot

    inputs = keras.Input((4,))
    model = keras.Model(inputs, L.Dense(3)(inputs))
    stripped = tfmot.sparsity.keras.strip_pruning(tfmot.sparsity.keras.prune_low_magnitude(model))
    assert metrics.count_macs(stripped).dense == 12
