"""Mixed 4/8-bit quantization: the grid, sensitivity, allocation and quantization-aware training."""
from __future__ import annotations

import numpy as np
import pytest

from kerasprune import quantization as Q
from kerasprune.backend import keras, tf
from kerasprune.errors import ConfigError, ModelError
from kerasprune.importance import lookup
from kerasprune.loading import load_model
from kerasprune.quantization.sensitivity import LayerSensitivity


def text_model() -> keras.Model:
    inputs = keras.Input((12,), dtype="int32")
    x = keras.layers.Embedding(200, 16, name="emb")(inputs)
    x = keras.layers.Conv1D(8, 3, activation="relu", name="conv")(x)
    x = keras.layers.GlobalMaxPooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="fc")(x))


def vision_model() -> keras.Model:
    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(inputs)
    x = keras.layers.DepthwiseConv2D(3, name="dw")(x)
    x = keras.layers.SeparableConv2D(6, 3, name="sep")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(8, name="fc")(x))


def trained(model: keras.Model, seed: int = 0):
    rng = np.random.default_rng(seed)
    shape = model.inputs[0].shape[1:]
    x = (rng.integers(0, 200, (96, *shape)).astype("int32") if model.inputs[0].dtype == tf.int32
         else rng.standard_normal((96, *shape)).astype("float32"))
    y = rng.integers(0, 3, 96)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    return model, x, y, tf.data.Dataset.from_tensor_slices((x, y)).batch(32)


def test_the_grid_has_a_scale_per_output_channel_and_keeps_zeros():
    w = np.random.default_rng(0).standard_normal((5, 7)).astype("float32")
    w[0, :] = 0.0
    q = Q.quantize(w, 4, (1,))  # a Dense kernel: a scale per output column
    for column in range(7):
        steps = np.unique(q[:, column])
        assert len(steps) <= 15  # -7..7 times the column's scale
        assert np.isclose(np.abs(q[:, column]).max(), np.abs(w[:, column]).max())
    assert (q[0] == 0).all()
    rows = Q.quantize(w, 8, (0,))  # an embedding: a scale per row
    assert (rows[0] == 0).all() and np.abs(rows - w).max() <= np.abs(w).max() / 127 / 2 + 1e-7


def test_fake_quantization_gives_the_grid_forward_and_the_identity_gradient():
    w = tf.Variable(np.random.default_rng(1).standard_normal((3, 3, 4)).astype("float32"))
    with tf.GradientTape() as tape:
        out = Q.grid.fake_quantize(w, 4, (2,))
        loss = tf.reduce_sum(out * 3.0)
    np.testing.assert_allclose(out.numpy(), Q.quantize(w.numpy(), 4, (2,)), atol=1e-6)
    np.testing.assert_allclose(tape.gradient(loss, w).numpy(), 3.0)


def test_quantizable_weights_are_listed_with_the_widths_tflite_can_hold():
    found = {(q.layer, q.attr): (q.channel_axes, q.bits) for q in Q.quantizable(vision_model())}
    assert found == {("c1", "kernel"): ((3,), (4, 8)), ("dw", "depthwise_kernel"): ((2, 3), (8,)),
                     ("sep", "depthwise_kernel"): ((2, 3), (8,)), ("sep", "pointwise_kernel"): ((3,), (4, 8)),
                     ("fc", "kernel"): ((1,), (4, 8))}
    assert {q.layer: q.channel_axes for q in Q.quantizable(text_model())}["emb"] == (0,)


def test_a_transposed_convolution_is_not_listed():
    """Its kernel holds the output channels second to last, and TFLite's TRANSPOSE_CONV has
    no INT4/INT8 recipe: listed, it would be trained on the wrong grid and stay float32."""
    inputs = keras.Input((6, 4))
    x = keras.layers.Conv1DTranspose(3, 3, name="deconv1d")(inputs)
    x = keras.layers.Reshape((8, 3, 1))(x)
    x = keras.layers.Conv2DTranspose(2, 3, name="deconv2d")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(keras.layers.Flatten()(x)))
    assert [q.layer for q in Q.quantizable(model)] == ["fc"]


def nested_model() -> keras.Model:
    inputs = keras.Input((6,))
    backbone = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, name="inner")], name="backbone")
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(backbone(inputs)))


def test_layers_out_of_reach_of_the_quantize_wrappers_are_refused_by_name():
    from kerasprune import prune

    with pytest.raises(ModelError, match="'inner' is inside a nested model.*build the model flat"):
        Q.quantize_aware(nested_model(), {"inner": 4, "head": 4})
    with pytest.raises(ModelError, match="'fc' is inside the wrapper 'prune_fc'.*kerasprune.strip"):
        Q.quantize_aware(prune(text_model()), {"fc": 4})


def test_two_quantizable_layers_of_one_name_are_refused():
    inputs = keras.Input((6,))
    inner = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, name="fc")], name="backbone")
    model = keras.Model(inputs, keras.layers.Dense(3, name="fc")(inner(inputs)), name="twice")
    with pytest.raises(ModelError, match="'twice' has two quantizable layers named 'fc'.*rename one"):
        Q.quantizable(model)


def test_sensitivity_reaches_into_nested_models_but_not_into_wrappers():
    from kerasprune import prune

    model, *_, data = trained(nested_model())
    assert {row.layer for row in Q.measure(model, data, batches=2)} == {"inner", "head"}
    text, *_, text_data = trained(text_model())
    with pytest.raises(ModelError, match="'emb' is inside the wrapper 'prune_emb'"):
        Q.measure(prune(text), text_data, batches=1)


def test_sensitivity_reads_a_loss_compiled_by_name_and_any_kind_of_label():
    """``compile(loss="...")`` gives Keras a per-example function: the table takes its batch
    mean.  A single sigmoid unit's class is a threshold, not an argmax."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2048, 6)).astype("float32"), rng.integers(0, 2, 2048)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(16, activation="tanh", name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="out")(hidden))
    model.compile("adam", "binary_crossentropy")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(256)  # untrained: outputs near 0.5 flip
    row = {r.layer: r for r in Q.measure(model, data, batches=8)}["hidden"]

    def scores() -> tuple[float, float]:
        out = model.predict(x, verbose=0)
        loss = float(keras.losses.BinaryCrossentropy()(y[:, None], out))
        return loss, float(np.mean((out[:, 0] > 0.5) == y))

    (loss, accuracy), kernel = scores(), model.get_layer("hidden").kernel
    kernel.assign(Q.quantize(kernel.numpy(), 4, (1,)))
    loss4, accuracy4 = scores()
    assert row.loss_change == pytest.approx(loss4 - loss, abs=1e-5)
    assert row.accuracy_change == pytest.approx(accuracy4 - accuracy) and accuracy4 != accuracy


def test_quantization_aware_training_keeps_pruned_zeros_and_bakes_to_the_same_outputs(tmp_path):
    model, x, y, _ = trained(text_model())
    kernel = model.get_layer("conv").kernel
    pruned = kernel.numpy()
    pruned[:, :8, :] = 0.0
    kernel.assign(pruned)
    qat = Q.quantize_aware(model, {"emb": 4, "conv": 4, "fc": 8})
    qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x, y, epochs=2, batch_size=32, verbose=0)

    baked = Q.bake(qat)
    assert not any("quant" in layer.name for layer in baked.layers)
    np.testing.assert_allclose(baked.predict(x, verbose=0), qat.predict(x, verbose=0), atol=1e-5)
    conv = baked.get_layer("conv").kernel.numpy()
    assert (conv[:, :8, :] == 0).all() and np.count_nonzero(conv[:, 8:, :]) > 0
    np.testing.assert_allclose(conv, Q.quantize(conv, 4, (2,)), rtol=1e-6)  # already on the grid
    fc = baked.get_layer("fc").kernel.numpy()
    np.testing.assert_allclose(fc, Q.quantize(fc, 8, (1,)), rtol=1e-6)
    assert not np.allclose(fc, Q.quantize(fc, 4, (1,)))  # 8 bits: a finer grid than 4

    baked.save(tmp_path / "baked.keras")
    loaded = keras.models.load_model(tmp_path / "baked.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), qat.predict(x, verbose=0), atol=1e-5)
    qat.save(tmp_path / "qat.keras")  # tfmot's wrappers do not load again: the loader says what does
    with pytest.raises(ModelError, match="holds a quantization-aware model .*save kerasprune.quantization.bake"):
        load_model(tmp_path / "qat.keras")
    import tensorflow_model_optimization as tfmot  # tfmot's own QAT: bake() would not help

    inputs = keras.Input((6,))
    tfmot.quantization.keras.quantize_model(keras.Model(inputs, keras.layers.Dense(2)(inputs))).save(
        tmp_path / "tfmot.keras")
    with pytest.raises(ModelError, match="quantization-aware model .*inside tfmot.quantization.keras.quantize_scope"):
        load_model(tmp_path / "tfmot.keras")


def test_bits_for_an_unknown_layer_or_width_are_refused_by_name():
    model = text_model()
    with pytest.raises(ConfigError, match="'pool' is not a quantizable layer.*emb, conv, fc"):
        Q.quantize_aware(model, {"pool": 4})
    with pytest.raises(ConfigError, match="'fc' gets 2 bits; use 4 or 8"):
        Q.quantize_aware(model, {"fc": 2})


def test_sensitivity_measures_each_layer_alone_and_restores_the_weights():
    model, x, y, data = trained(vision_model())
    before = [w.copy() for w in model.get_weights()]
    table = {row.layer: row for row in Q.measure(model, data, batches=3)}
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert table["dw"].fixed and table["dw"].loss_change is None
    assert table["fc"].bytes_4 < table["fc"].bytes_8 and table["fc"].fisher >= 0

    # the measured change is the loss with only fc's kernel on the 4-bit grid
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    base = float(loss_fn(y, model.predict(x, verbose=0)))
    kernel = model.get_layer("fc").kernel
    kernel.assign(Q.quantize(kernel.numpy(), 4, (1,)))
    assert table["fc"].loss_change == pytest.approx(float(loss_fn(y, model.predict(x, verbose=0))) - base,
                                                    abs=1e-4)
    scores = lookup("fisher", "layer").scores(model, data, 2)
    assert set(scores) == {"c1", "sep", "fc"}  # every layer that can take 4 bits


def _table() -> list[LayerSensitivity]:
    # bytes saved by 4 bits: big 500, mid 100, small 10; loss per byte saved 0.0001, 0.001,
    # 0.01, but Fisher per byte 0.01, 0.005, 0.001 (the other order)
    return [LayerSensitivity("big", 1000, 1004, 504, loss_change=0.05, fisher=5.0),
            LayerSensitivity("mid", 200, 204, 104, loss_change=0.1, fisher=0.5),
            LayerSensitivity("small", 20, 24, 14, loss_change=0.1, fisher=0.01),
            LayerSensitivity("depthwise", 50, 54, 54)]


def test_the_cheapest_bytes_drop_to_4_bits_first_until_the_budget_is_met():
    alloc = Q.allocate(_table(), byte_budget=800)
    assert alloc.bits == {"big": 4, "mid": 8, "small": 8, "depthwise": 8}
    assert alloc.weight_bytes == 786 and alloc.order == ["big", "mid", "small"]
    assert Q.allocate(_table(), byte_budget=700).four_bit == ["big", "mid"]
    # by the Fisher column the order differs: small (0.01/byte) before mid and big
    assert Q.allocate(_table(), score="fisher", byte_budget=1280).four_bit == ["small"]


def test_a_fraction_or_a_tolerance_decides_instead_of_a_budget():
    assert Q.allocate(_table(), eight_bit_fraction=0.25).bits == {"big": 4, "mid": 8, "small": 8, "depthwise": 8}
    assert Q.allocate(_table(), eight_bit_fraction=0.0).four_bit == ["big", "mid", "small"]
    assert Q.allocate(_table(), tolerance=0.16).four_bit == ["big", "mid"]
    assert Q.allocate(_table(), tolerance=0.0).four_bit == []


@pytest.mark.parametrize("kwargs, message", [
    ({}, "exactly one of byte_budget, eight_bit_fraction, tolerance, got none"),
    ({"byte_budget": 900, "tolerance": 0.1}, "exactly one of .* got byte_budget, tolerance"),
    ({"byte_budget": 600}, "below the 676 bytes .* every layer at 4 bits"),
    ({"tolerance": -1}, r"tolerance=\) must be a number >= 0"),
    ({"eight_bit_fraction": 0.5, "score": "hessian"}, "one of quantization_loss, fisher"),
])
def test_bad_allocation_requests_say_what_to_change(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Q.allocate(_table(), **kwargs)
