"""The wrapper masks weights in the forward pass, records Taylor scores, and saves."""
from __future__ import annotations

import numpy as np
import pytest
from tensorflow_model_optimization.python.core.sparsity.keras.prunable_layer import PrunableLayer

from kerasprune import PruningWrapper, prune, set_sparsity, strip
from kerasprune.backend import keras
from kerasprune.sparsity.prune import wrappers

L = keras.layers


def _models():
    """Small models covering every kind of prunable layer, with inputs."""
    rng = np.random.default_rng(0)
    images = rng.standard_normal((6, 8, 8, 3)).astype("float32")
    tokens = rng.integers(0, 20, (6, 7)).astype("int32")
    seq = rng.standard_normal((6, 5, 4)).astype("float32")

    x = keras.Input((8, 8, 3))
    y = L.Conv2D(4, 3, name="conv")(x)
    y = L.SeparableConv2D(4, 3, name="sep")(y)
    y = L.Dense(3, name="dense")(L.Flatten()(y))
    yield "conv", keras.Model(x, y), images

    x = keras.Input((7,), dtype="int32")
    y = L.Embedding(20, 6, name="emb")(x)
    y = L.Bidirectional(L.LSTM(3), name="bi")(y)
    yield "recurrent", keras.Model(x, L.Dense(2, name="out")(y)), tokens

    x = keras.Input((5, 4))
    y = L.MultiHeadAttention(2, 2, name="mha")(x, x)
    y = L.GRU(3, name="gru")(y)
    yield "attention", keras.Model(x, y), seq


@pytest.mark.parametrize("name, model, x", list(_models()), ids=lambda v: v if isinstance(v, str) else "")
def test_masks_of_ones_leave_outputs_unchanged_and_strip_matches_masked(name, model, x):
    expected = model.predict(x, verbose=0)
    pruned = prune(model)
    assert len(wrappers(pruned)) >= 2
    np.testing.assert_allclose(pruned.predict(x, verbose=0), expected, atol=1e-6)
    set_sparsity(pruned, 0.6, "magnitude", scope="layer")
    masked = pruned.predict(x, verbose=0)
    assert not np.allclose(masked, expected)
    stripped = strip(pruned)
    assert not any(isinstance(l, PruningWrapper) for l in stripped.layers)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), masked, atol=1e-5)


def test_training_leaves_pruned_weights_alone_and_records_taylor_scores():
    inputs = keras.Input((6,))
    model = prune(keras.Model(inputs, L.Dense(4, name="d")(inputs)))
    set_sparsity(model, 0.5, scope="layer")
    wrapper = wrappers(model)[0]
    kernel, mask = wrapper.prunable[0].variable, wrapper.masks[0].numpy()
    before = kernel.numpy().copy()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    rng = np.random.default_rng(1)
    model.fit(rng.standard_normal((32, 6)), rng.standard_normal((32, 4)), batch_size=8, epochs=1, verbose=0)
    after = kernel.numpy()
    np.testing.assert_array_equal(after[mask == 0], before[mask == 0])  # masked gradient
    assert not np.allclose(after[mask == 1], before[mask == 1])
    (taylor,) = wrapper.taylor_scores()
    assert float(wrapper.score_counts[0].numpy()) == 4  # one per batch
    assert taylor.shape == kernel.shape and np.all(taylor >= 0) and taylor.sum() > 0
    wrapper.reset_scores()
    assert wrapper.taylor_scores() == [None]


def test_under_mixed_precision_masks_hold_and_scores_are_recorded():
    """A mixed_float16 model with the usual float32 output layer: each wrapper keeps its
    layer's policy, and the float16 gradients are masked and scored."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        inputs = keras.Input((8,), dtype="int32")
        x = L.Flatten()(L.Embedding(20, 4, name="emb")(inputs))
        hidden = L.Dense(16, activation="relu", name="h")(x)
        model = prune(keras.Model(inputs, L.Dense(3, name="out", dtype="float32")(hidden)))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("prune_out").compute_dtype == "float32"
    assert model.get_layer("prune_h").compute_dtype == "float16"
    set_sparsity(model, 0.5)
    before = {w.name: w.prunable[0].variable.numpy().copy() for w in wrappers(model)}
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).integers(0, 20, (64, 8))
    model.fit(x, np.arange(64) % 3, epochs=1, batch_size=16, verbose=0)
    for wrapper in wrappers(model):
        kernel, mask = wrapper.prunable[0].variable.numpy(), wrapper.masks[0].numpy()
        assert kernel.dtype == np.float32 and mask.dtype == np.float32
        np.testing.assert_array_equal(kernel[mask == 0], before[wrapper.name][mask == 0])
        (taylor,) = wrapper.taylor_scores()
        assert np.isfinite(taylor).all() and taylor.sum() > 0, wrapper.name


@pytest.mark.parametrize("suffix", [".keras", ".h5", ""])
def test_pruned_models_save_and_load_without_custom_objects(tmp_path, suffix):
    _, model, x = next(_models())
    pruned = prune(model)
    set_sparsity(pruned, 0.5)
    path = str(tmp_path / f"pruned{suffix}")
    pruned.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-6)
    for a, b in zip(wrappers(loaded), wrappers(pruned)):
        np.testing.assert_array_equal(a.masks[0].numpy(), b.masks[0].numpy())


def test_rollback_restores_the_previous_masks_and_weights():
    inputs = keras.Input((6,))
    model = prune(keras.Model(inputs, L.Dense(4)(inputs)))
    x = np.ones((2, 6), "float32")
    set_sparsity(model, 0.25)
    at_25 = model.predict(x, verbose=0)
    set_sparsity(model, 0.75)
    for w in wrappers(model):
        w.restore_previous_masks()
    np.testing.assert_allclose(model.predict(x, verbose=0), at_25, atol=1e-6)


def test_embedding_rows_get_sparse_gradients_and_scores():
    inputs = keras.Input((4,), dtype="int32")
    x = L.GlobalAveragePooling1D()(L.Embedding(10, 3, name="emb")(inputs))
    model = prune(keras.Model(inputs, L.Dense(1, name="out")(x)), layers=["emb"])
    wrapper = wrappers(model)[0]
    table = wrapper.prunable[0].variable
    wrapper.masks[0].assign(np.where(np.arange(10)[:, None] == 2, 0.0, 1.0) * np.ones((10, 3)))
    before = table.numpy().copy()
    model.compile(keras.optimizers.SGD(0.5), "mse")
    tokens = np.array([[1, 2, 3, 1]] * 8, dtype="int32")  # rows 1-3 only; row 2 is masked
    model.fit(tokens, np.ones((8, 1)), epochs=1, batch_size=4, verbose=0)
    changed = np.any(table.numpy() != before, axis=1)
    assert changed.tolist() == [False, True, False, True] + [False] * 6
    (taylor,) = wrapper.taylor_scores()
    assert np.all(taylor[[0, 4, 5]] == 0) and np.all(taylor[[1, 3]] > 0)


def test_masks_from_embeddings_reach_only_layers_that_take_them():
    inputs = keras.Input((5,), dtype="int32")
    x = L.Embedding(10, 4, mask_zero=True, name="emb")(inputs)
    x = L.Dense(4, name="dense")(x)  # takes no mask argument
    x = L.LSTM(3, name="lstm")(x)  # does
    model = keras.Model(inputs, x)
    tokens = np.array([[1, 2, 0, 0, 0], [3, 4, 5, 0, 0]], dtype="int32")
    np.testing.assert_allclose(prune(model).predict(tokens, verbose=0), model.predict(tokens, verbose=0), atol=1e-6)


@keras.utils.register_keras_serializable(package="user")
class _UserDense(keras.layers.Dense, PrunableLayer):
    """A user's own layer, registered and prunable through tfmot's PrunableLayer."""

    def get_prunable_weights(self):
        return [self.kernel]


@pytest.mark.parametrize("suffix", [".keras", ".h5", ""])
def test_a_pruned_model_with_a_registered_custom_layer_loads(tmp_path, suffix):
    model = keras.Sequential([keras.Input((4,)), _UserDense(3, name="mine")])
    pruned = prune(model)
    set_sparsity(pruned, 0.5)
    path = tmp_path / f"pruned{suffix}"
    pruned.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.layers[0].layer, _UserDense)
    x = np.ones((2, 4), "float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-6)
