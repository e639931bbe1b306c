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
