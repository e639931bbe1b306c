"""Keras 3 models in and out: converted with their weights, optimized, exported, returned."""
from __future__ import annotations

import numpy as np
import pytest

from kerasprune import ModelError, export
from kerasprune.backend import keras as tf_keras
from kerasprune.interop import from_keras3, to_keras3
from kerasprune.structured import plan_channels, shrink


def _keras3_cnn():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    y = keras.layers.Conv2D(6, 3, padding="same", name="side")(x)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu", name="fc")(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="logits")(x))


def _keras3_text():
    import keras

    return keras.Sequential([keras.Input((12,), dtype="int32"), keras.layers.Embedding(50, 8),
                             keras.layers.Bidirectional(keras.layers.LSTM(4)),
                             keras.layers.Dense(2, activation="softmax")], name="text")


@pytest.mark.parametrize("build", [_keras3_cnn, _keras3_text])
def test_a_keras_3_model_round_trips_with_equal_outputs(build):
    import keras

    original = build()
    converted = from_keras3(original)
    assert isinstance(converted, tf_keras.Model) and not isinstance(converted, keras.Model)
    back = to_keras3(converted)
    assert isinstance(back, keras.Model)
    x = (np.random.default_rng(1).integers(0, 50, (4, 12)).astype("int32") if build is _keras3_text
         else np.random.default_rng(1).standard_normal((4, 8, 8, 3)).astype("float32"))
    np.testing.assert_allclose(converted.predict(x, verbose=0), original.predict(x, verbose=0), atol=1e-5)
    np.testing.assert_allclose(back.predict(x, verbose=0), original.predict(x, verbose=0), atol=1e-5)


def test_the_optimized_form_exports_to_tflite_and_goes_back_to_keras_3(tmp_path):
    converted = from_keras3(_keras3_cnn())
    small = shrink(converted, plan_channels(converted, 0.5))
    x = np.random.default_rng(2).standard_normal((4, 8, 8, 3)).astype("float32")
    out = export.to_tflite(small, tmp_path / "small.tflite", check_inputs=x)
    assert out.path.is_file() and out.max_abs_diff < 1e-4
    np.testing.assert_allclose(to_keras3(small).predict(x, verbose=0), small.predict(x, verbose=0), atol=1e-5)


def test_a_model_whose_dropout_draws_from_a_generator_goes_to_keras_3():
    from kerasprune.random_state import layer_generators

    with layer_generators():  # an `exact_resume` model: its Dropout's config says rng_type="stateful"
        model = tf_keras.Sequential([tf_keras.Input((8,)), tf_keras.layers.Dense(4),
                                     tf_keras.layers.Dropout(0.5), tf_keras.layers.Dense(2)])
    x = np.random.default_rng(3).standard_normal((4, 8)).astype("float32")
    np.testing.assert_allclose(to_keras3(model).predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_a_custom_keras_3_layer_is_named_in_the_error():
    import keras

    @keras.saving.register_keras_serializable(package="test")
    class Twice(keras.layers.Layer):
        def call(self, x):
            return 2 * x

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(Twice(name="twice")(inputs)))
    with pytest.raises(ModelError, match=r"layer 'twice' \(Twice\) has no tf_keras equivalent"):
        from_keras3(model)
    with pytest.raises(ModelError, match="expected a Keras 3 model"):
        from_keras3(tf_keras.Sequential([tf_keras.Input((2,)), tf_keras.layers.Dense(1)]))


def _keras3_graphs():
    """Functional graphs that a layer-by-layer rebuild has to get right."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,), name="x")
    shared = keras.layers.Dense(4, name="shared")
    # called again after a layer listed later in the config: that call waits for it
    reused = shared(keras.layers.Dense(4, name="mid")(shared(inputs)))
    a, b = keras.layers.Dense(4, name="a")(inputs), keras.layers.Dense(4, name="b")(inputs)
    arithmetic = a * b - a + reused  # Keras 3 operations, not layers
    query, value = keras.Input((5, 4), name="query"), keras.Input((3, 6), name="value")
    attention = keras.layers.MultiHeadAttention(2, 4, name="mha")(query, value)
    return [keras.Model(inputs, arithmetic), keras.Model([query, value], attention)]


def test_shared_layers_attention_and_tensor_arithmetic_convert_with_equal_outputs():
    for original in _keras3_graphs():
        converted = from_keras3(original)
        inputs = [np.random.default_rng(4).standard_normal((3, *x.shape[1:])).astype("float32")
                  for x in original.inputs]
        np.testing.assert_allclose(converted.predict(inputs, verbose=0),
                                   original.predict(inputs, verbose=0), atol=1e-5)
        np.testing.assert_allclose(to_keras3(converted).predict(inputs, verbose=0),
                                   original.predict(inputs, verbose=0), atol=1e-5)


def test_keras_3_settings_are_renamed_or_dropped_at_their_default_and_named_otherwise():
    import keras

    leaky = from_keras3(keras.Sequential([keras.Input((4,)), keras.layers.LeakyReLU(0.2)]))
    assert leaky.layers[-1].get_config()["alpha"] == pytest.approx(0.2)  # Keras 3's negative_slope
    # data_format, fill_mode, antialias...: Keras 3 only, at Resizing's defaults
    from_keras3(keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Resizing(4, 4)]))
    padded = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Resizing(4, 4, pad_to_aspect_ratio=True,
                                                                             name="fit")])
    with pytest.raises(ModelError, match=r"layer 'fit' \(Resizing\) sets pad_to_aspect_ratio, which tf_keras "
                                         "does not have"):
        from_keras3(padded)


def test_free_dimensions_are_checked_at_a_size_that_builds_or_a_fixed_shape_is_asked_for():
    import keras

    def pooled_conv(kernel: int):
        return keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(4, kernel),
                                 keras.layers.GlobalAveragePooling2D()], name=f"conv{kernel}")

    from_keras3(pooled_conv(5))
    with pytest.raises(ModelError, match="model 'conv40' does not run on a check batch of shape.*"
                                         "give the model a fixed input shape"):
        from_keras3(pooled_conv(40))


def test_keras_3_models_that_do_not_convert_are_refused_with_what_to_do():
    import keras

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__(name="sub")
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    subclassed = Subclassed()
    subclassed(np.zeros((1, 4), "float32"))
    with pytest.raises(ModelError, match=r"model 'sub' is subclassed \(Subclassed\).*"
                                         r"keras.Model\(inputs, outputs\)"):
        from_keras3(subclassed)
    named = {"x": keras.Input((4,), name="x")}
    with pytest.raises(ModelError, match="takes or gives a dict"):
        from_keras3(keras.Model(named, {"y": keras.layers.Dense(2)(named["x"])}))
    inputs = keras.Input((4,))
    with pytest.raises(ModelError, match=r"'matmul[_0-9]*' is a Keras 3 operation \(Matmul"
                                         r".*standard layers"):
        from_keras3(keras.Model(inputs, keras.ops.matmul(inputs, np.ones((4, 2), "float32"))))
    with pytest.raises(ModelError, match=r"'add[_0-9]*' is a Keras 3 operation \(Add"
                                         r".*only \+, - and \* of two tensors"):
        from_keras3(keras.Model(inputs, inputs + 1.0))


@tf_keras.utils.register_keras_serializable("test_interop")
class Halve(tf_keras.layers.Layer):
    def call(self, x):
        return x / 2


def test_tf_keras_models_that_keras_3_cannot_rebuild_are_refused_by_layer():
    from kerasprune import prune

    def model(*layers):
        return tf_keras.Sequential([tf_keras.Input((6, 2)), *layers])

    refusals = [
        (prune(model(tf_keras.layers.Dense(2, name="fc"))),
         r"layer 'prune_fc' is wrapped for pruning.*to_keras3\(kerasprune.strip\(model\)\)"),
        (model(tf_keras.layers.Lambda(lambda x: x * 2, name="twice")),
         r"layer 'twice' \(Lambda\) holds Python code"),
        (model(tf_keras.layers.LocallyConnected1D(2, 3, name="local")),
         r"layer 'local' \(LocallyConnected1D\) has no Keras 3 equivalent"),
        (model(Halve(name="halve")), r"layer 'halve' \(Halve\) has no Keras 3 equivalent"),
    ]
    for tf_model, message in refusals:
        with pytest.raises(ModelError, match=message):
            to_keras3(tf_model)

    class Subclassed(tf_keras.Model):
        def call(self, x):
            return x

    subclassed = Subclassed(name="sub")
    subclassed(np.zeros((1, 4), "float32"))
    with pytest.raises(ModelError, match="model 'sub' is subclassed"):
        to_keras3(subclassed)
