"""A model with Dropout, killed and resumed, ends on the unbroken run's weights when its
random layers draw from a generator whose state ``RandomState`` keeps beside the backup."""
from __future__ import annotations

import json

import numpy as np
import pytest

from kerasprune.backend import keras, tf
from kerasprune.random_state import RandomState, generators, layer_generators

RNG = np.random.default_rng(0)
X = RNG.standard_normal((96, 12)).astype("float32")
Y = (X[:, :3].sum(axis=1) > 0).astype("int32")


class _Crash(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt


def _model(rnn_dropout: float = 0.0, names: bool = True):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12,))
    x = keras.layers.Dense(32, activation="relu")(inputs)
    x = keras.layers.Dropout(0.5, name="drop" if names else None)(x)
    x = keras.layers.Reshape((4, 8))(x)
    x = keras.layers.LSTM(4, dropout=rnn_dropout, name="lstm" if names else None)(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    return model


def _run(directory, *, exact: bool, crash: bool = False, rnn_dropout: float = 0.0, strategy=None,
         names: bool = True):
    with (strategy or tf.distribute.get_strategy()).scope(), layer_generators(exact):
        model = _model(rnn_dropout, names)
    callbacks = [RandomState(directory / "random_state.json"),
                 keras.callbacks.BackupAndRestore(str(directory / "backup")), *([_Crash()] if crash else [])]
    model.fit(X, Y, epochs=4, batch_size=16, shuffle=False, verbose=0, callbacks=callbacks)
    return model


def _killed_and_resumed(directory, **kwargs):
    with pytest.raises(KeyboardInterrupt):
        _run(directory, crash=True, **kwargs)
    return _run(directory, **kwargs)


@pytest.mark.parametrize("mirrored", [False, True])
def test_a_killed_dropout_model_built_with_layer_generators_resumes_bit_for_bit(tmp_path, mirrored):
    tf.config.experimental.enable_op_determinism()
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"]) if mirrored else None  # a distributed state
    unbroken = _run(tmp_path / "a", exact=True, strategy=strategy)
    resumed = _killed_and_resumed(tmp_path / "b", exact=True, strategy=strategy)
    assert list(generators(resumed)) == ["0:Dropout", "1:LSTM", "2:LSTMCell"]  # the LSTM's unused
    for a, b in zip(unbroken.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # the generator is a config setting of the layer, so the saved model keeps drawing from one
    assert resumed.get_layer("drop").get_config()["rng_type"] == "stateful"
    assert not keras.backend.experimental.is_tf_random_generator_enabled()  # switched back


def test_a_resume_that_cannot_be_exact_says_why_and_trains_on(tmp_path):
    tf.config.experimental.enable_op_determinism()
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, exact=True, crash=True)
    (tmp_path / "random_state.json").unlink()  # the state lost
    with pytest.warns(UserWarning, match=r"starts at epoch 3 without the random state of drop in .*"
                                         r"holds epochs none.*not reproduced exactly"):
        _run(tmp_path, exact=True)  # an LSTM without dropout draws nothing, so is not named

    with pytest.warns(UserWarning, match=r"starts at epoch 3, and drop draw from TensorFlow's global random "
                                         r"state.*layer_generators\(\).*exact_resume: true"):
        _killed_and_resumed(tmp_path / "legacy", exact=False)
    with pytest.warns(UserWarning, match="starts at epoch 3, and drop, lstm, lstm_cell draw"):
        _killed_and_resumed(tmp_path / "legacy_rnn", exact=False, rnn_dropout=0.2)


def test_the_state_is_found_by_place_not_by_keras_automatic_names(tmp_path):
    """A resumed process may have built other models first, so its layers are `dropout_1`,
    `lstm_2`, ...; and a file left by an older, longer run does not outlive the new one."""
    tf.config.experimental.enable_op_determinism()
    unbroken = _run(tmp_path / "a", exact=True, rnn_dropout=0.2)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "random_state.json").write_text('{"epochs": {"7": {}, "8": {}}}')
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", exact=True, crash=True, rnn_dropout=0.2, names=False)
    assert sorted(json.loads((tmp_path / "b" / "random_state.json").read_text())["epochs"]) == ["1", "2"]
    with layer_generators():
        _model(names=False)  # the next model's layers get other automatic names
    resumed = _run(tmp_path / "b", exact=True, rnn_dropout=0.2, names=False)
    for a, b in zip(unbroken.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
