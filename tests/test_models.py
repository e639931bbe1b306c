"""Every zoo model builds for its kind of data, trains a step, and saves and loads."""
from __future__ import annotations

import numpy as np
import pytest

from kerasprune import models
from kerasprune.backend import keras
from kerasprune.errors import ConfigError

IMAGE = {"lenet5": (28, 28, 1), "lenet_300_100": (28, 28, 1)}


def _batch(name: str, n: int = 4):
    rng = np.random.default_rng(0)
    if models.ZOO[name].kind == "text":
        return rng.integers(0, 100, size=(n, 16)).astype("int32"), rng.integers(0, 2, n)
    shape = IMAGE.get(name, (32, 32, 3))
    return rng.standard_normal((n, *shape)).astype("float32"), rng.integers(0, 10, n)


def _build(name: str, **kwargs):
    x, _ = _batch(name)
    if models.ZOO[name].kind == "text":
        return models.build(name, input_shape=(16,), num_classes=2, vocab_size=100, **kwargs)
    return models.build(name, input_shape=x.shape[1:], num_classes=10, **kwargs)


@pytest.mark.parametrize("name", sorted(models.ZOO))
def test_every_zoo_model_builds_and_takes_a_training_step(name):
    model = _build(name)
    x, y = _batch(name)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    before = [w.numpy().copy() for w in model.trainable_weights]
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    changed = sum(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))
    assert changed >= len(before) // 2  # gradients reached most weights
    probs = model.predict(x, verbose=0)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)


def test_width_scales_channels():
    narrow, full = _build("resnet20", width=0.5), _build("resnet20")
    assert narrow.get_layer("stem_conv").filters == 8 and full.get_layer("stem_conv").filters == 16
    assert narrow.count_params() < full.count_params() / 3


def test_resnet_depths_follow_6n_plus_2():
    convs = [l for l in _build("resnet56").layers if isinstance(l, keras.layers.Conv2D)]
    assert len(convs) == 55 + 2  # 55 3x3 convs + 2 projection shortcuts


def test_transformer_with_custom_layer_round_trips_through_keras_file(tmp_path):
    model = _build("transformer")
    x, _ = _batch("transformer")
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_unknown_model_and_arguments_are_named():
    with pytest.raises(ConfigError, match="unknown model 'resnet21'.*resnet20"):
        models.build("resnet21", input_shape=(32, 32, 3), num_classes=10)
    with pytest.raises(ConfigError, match="no argument.*depth.*accepts width"):
        models.build("resnet20", input_shape=(32, 32, 3), num_classes=10, depth=3)


def test_model_kind_must_match_the_data(mock_tfds):
    from kerasprune import data

    d = data.load("sst2", batch_size=4, seq_len=8, vocab_size=20, data_dir="/unused")
    with pytest.raises(ConfigError, match="'lenet5' takes image inputs but dataset 'sst2' is text"):
        models.build_for(d, "lenet5")
    assert models.build_for(d, "textcnn").input_shape == (None, 8)
