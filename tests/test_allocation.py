"""Masks reach the requested sparsity exactly, per layer or globally, by importance."""
from __future__ import annotations

import numpy as np
import pytest

from kerasprune import prune, set_sparsity
from kerasprune.backend import keras
from kerasprune.sparsity.allocation import allocate
from kerasprune.sparsity.prune import wrappers


def _pruned(sizes=((20, 30), (30, 7), (7, 3))):
    inputs = keras.Input((sizes[0][0],))
    x = inputs
    for i, (_, units) in enumerate(sizes):
        x = keras.layers.Dense(units, name=f"d{i}")(x)
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(0)
    for layer in model.layers[1:]:
        layer.kernel.assign(rng.standard_normal(layer.kernel.shape).astype("float32"))
    return prune(model)


def _zeros(wrapper):
    return sum(int(np.sum(m.numpy() == 0)) for m in wrapper.masks)


@pytest.mark.parametrize("sparsity", [0.2, 0.5, 0.8, 0.95])
def test_every_layer_reaches_exactly_its_sparsity_in_layer_scope(sparsity):
    model = _pruned()
    set_sparsity(model, sparsity, scope="layer")
    for w in wrappers(model):
        n = int(np.prod(w.masks[0].shape))
        assert _zeros(w) == round(sparsity * n)


@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.98])
def test_global_scope_reaches_the_total_exactly_and_keeps_every_layer_alive(sparsity):
    model = _pruned()
    reached = set_sparsity(model, sparsity, scope="global")
    total = sum(int(np.prod(m.shape)) for w in wrappers(model) for m in w.masks)
    assert reached * total == pytest.approx(round(sparsity * total))
    assert all(_zeros(w) < int(np.prod(w.masks[0].shape)) for w in wrappers(model))


def test_magnitude_prunes_the_smallest_weights():
    model = _pruned()
    set_sparsity(model, 0.5, "magnitude", scope="layer")
    for w in wrappers(model):
        kernel, mask = np.abs(w.prunable[0].variable.numpy()), w.masks[0].numpy()
        assert kernel[mask == 0].max() <= kernel[mask == 1].min()


def test_raising_sparsity_never_revives_and_lowering_revives_the_best_pruned_weights():
    model = _pruned()
    set_sparsity(model, 0.5, scope="layer")
    at_50 = [w.masks[0].numpy().copy() for w in wrappers(model)]
    for w in wrappers(model):  # make the weights pruned at 50% look important now
        v = w.prunable[0].variable
        v.assign(np.where(w.masks[0].numpy() == 0, 100.0, v.numpy()))
    set_sparsity(model, 0.7, scope="layer")
    at_70 = [w.masks[0].numpy().copy() for w in wrappers(model)]
    for new, old in zip(at_70, at_50):
        assert np.all(new <= old)  # pruned stay pruned, however important they look
    set_sparsity(model, 0.3, scope="layer")
    for w, old in zip(wrappers(model), at_70):
        new = w.masks[0].numpy()
        assert np.all(new >= old)  # live weights stay live
        revived = (new == 1) & (old == 0)
        assert revived.any() and np.all(w.prunable[0].variable.numpy()[revived] == 100.0)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_with_revive_pruned_weights_compete_so_the_same_sparsity_rewires(scope):
    model = _pruned()
    set_sparsity(model, 0.6, scope=scope)
    before = [w.masks[0].numpy().copy() for w in wrappers(model)]
    set_sparsity(model, 0.6, scope=scope)  # without revive the same level changes nothing
    for w, old in zip(wrappers(model), before):
        np.testing.assert_array_equal(w.masks[0].numpy(), old)
    for w in wrappers(model):  # a pruned weight now scores above every live one
        v, pruned = w.prunable[0].variable, np.flatnonzero(w.masks[0].numpy() == 0)
        v.assign(np.where(np.arange(v.shape.num_elements()).reshape(v.shape) == pruned[0], 100.0, v.numpy()))
    set_sparsity(model, 0.6, scope=scope, revive=True)
    for w, old in zip(wrappers(model), before):
        new = w.masks[0].numpy()
        assert int((new == 0).sum()) == int((old == 0).sum())  # still exactly the same level
        assert np.all(w.prunable[0].variable.numpy()[(new == 1) & (old == 0)] == 100.0)
        assert int(((new == 1) & (old == 0)).sum()) == 1  # the one that now matters came back


def test_custom_importance_is_used():
    model = _pruned()
    first = wrappers(model)[0]
    order = np.arange(first.masks[0].numpy().size, dtype=float).reshape(first.masks[0].shape)
    masks = allocate([first], 0.5, lambda w, taylor, name: order, scope="layer")
    flat = masks[0][0].ravel()
    assert flat[: flat.size // 2].sum() == 0 and flat[flat.size // 2:].all()


def test_global_normalization_evens_out_sparsity_across_layers():
    model = _pruned(sizes=((40, 60), (60, 4)))
    big, small = wrappers(model)
    big.prunable[0].variable.assign(big.prunable[0].variable.numpy() * 0.01)  # small scores
    raw = allocate([big, small], 0.5, scope="global")
    normalized = allocate([big, small], 0.5, scope="global", normalize=True)
    assert raw[1][0].mean() == 1.0  # unnormalized: the small layer keeps everything
    assert 0.3 < normalized[1][0].mean() < 0.7 and normalized[0][0].mean() > raw[0][0].mean()
    total = sum(m[0].size for m in normalized)
    assert sum(int((m[0] == 0).sum()) for m in normalized) == total // 2  # still exact


def test_no_kernel_of_a_bidirectional_layer_goes_fully_zero_under_global_scope():
    inputs = keras.Input((5, 4))
    x = keras.layers.Bidirectional(keras.layers.LSTM(6), name="bi")(inputs)
    model = prune(keras.Model(inputs, keras.layers.Dense(2, name="out")(x)))
    forward_kernel = wrappers(model)[0].prunable[0]
    assert "forward" in forward_kernel.name
    forward_kernel.variable.assign(1e-6 * np.ones(forward_kernel.variable.shape, "float32"))
    set_sparsity(model, 0.95, "magnitude", scope="global", min_density=0.05)
    for wrapper in wrappers(model):
        for weight, mask in zip(wrapper.prunable, wrapper.masks):
            n = int(np.prod(mask.shape))
            assert int(mask.numpy().sum()) >= np.ceil(0.05 * n), weight.name


def test_layer_scope_keeps_the_floor_of_every_kernel_of_a_layer():
    inputs = keras.Input((5, 4))
    model = prune(keras.Model(inputs, keras.layers.LSTM(6, name="lstm")(inputs)))
    (wrapper,) = wrappers(model)
    kernel = wrapper.prunable[0].variable  # the input kernel, far below the recurrent one
    kernel.assign(1e-6 * np.ones(kernel.shape, "float32"))
    set_sparsity(model, 0.9, "magnitude", scope="layer", min_density=0.02)
    assert int(wrapper.masks[0].numpy().sum()) == np.ceil(0.02 * np.prod(kernel.shape))
