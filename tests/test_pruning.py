"""prune / set_sparsity / strip on whole models, and the errors for bad input."""
from __future__ import annotations

import numpy as np
import pytest

from kerasprune import metrics, models, prune, set_sparsity, strip
from kerasprune.backend import keras
from kerasprune.errors import ConfigError, ModelError
from kerasprune.sparsity.prune import wrappers


def _lenet():
    return models.build("lenet5", input_shape=(28, 28, 1), num_classes=10)


def test_every_prunable_layer_is_wrapped_and_metrics_see_the_masks():
    pruned = prune(_lenet())
    assert [w.layer.name for w in wrappers(pruned)] == ["conv1", "conv2", "fc1", "fc2", "logits"]
    reached = set_sparsity(pruned, 0.9, "magnitude")
    assert reached == pytest.approx(0.9, abs=1e-4)
    assert metrics.global_sparsity(pruned) == pytest.approx(reached)
    assert metrics.count_params(pruned) == metrics.count_params(_lenet())
    stripped = strip(pruned)
    assert metrics.global_sparsity(stripped) == pytest.approx(reached)
    assert metrics.count_macs(stripped).effective == metrics.count_macs(pruned).effective


def test_layers_can_be_selected_by_name_or_predicate():
    assert [w.layer.name for w in wrappers(prune(_lenet(), layers=["fc1"]))] == ["fc1"]
    dense_only = prune(_lenet(), layers=lambda l: isinstance(l, keras.layers.Dense))
    assert [w.layer.name for w in wrappers(dense_only)] == ["fc1", "fc2", "logits"]


def test_strip_returns_an_independent_model():
    pruned = prune(_lenet())
    set_sparsity(pruned, 0.5)
    stripped = strip(pruned)
    stripped.get_layer("fc1").kernel.assign(np.zeros_like(stripped.get_layer("fc1").kernel.numpy()))
    assert np.count_nonzero(wrappers(pruned)[2].masked_values()[0]) > 0


def test_strip_unmasked_gives_the_values_the_masks_hide_so_a_pruned_weight_can_come_back():
    original = _lenet()
    pruned = prune(original)
    set_sparsity(pruned, 0.5)
    kernel = original.get_layer("fc1").kernel.numpy()
    hidden = strip(pruned).get_layer("fc1").kernel.numpy() == 0
    assert hidden.any() and kernel[hidden].all()  # the masks hide weights that are not zero
    np.testing.assert_array_equal(strip(pruned, masked=False).get_layer("fc1").kernel.numpy(), kernel)


@pytest.mark.parametrize("call, error, message", [
    (lambda: prune(_lenet(), layers=["nope"]), ConfigError, "no layer.*nope"),
    (lambda: prune(_lenet(), layers=["pool1"]), ModelError, "'pool1'.*not prunable"),
    (lambda: prune(prune(_lenet())), ModelError, "already pruned"),
    (lambda: set_sparsity(_lenet(), 0.5), ModelError, "call kerasprune.prune"),
    (lambda: set_sparsity(prune(_lenet()), 1.5), ConfigError, r"sparsity must be a number in \[0, 1\)"),
])
def test_bad_input_gets_a_specific_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_subclassed_models_are_refused():
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    with pytest.raises(ModelError, match="subclassed"):
        prune(Sub())


def test_a_model_with_nothing_to_prune_is_refused_naming_its_layer_types():
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.MaxPooling2D(), keras.layers.Flatten()])
    with pytest.raises(ModelError, match="no prunable layer.*Flatten, MaxPooling2D"):
        prune(model)


def test_a_nested_model_is_named_rather_than_left_dense():
    """Its layers are not the outer model's, so no wrapper, mask or schedule would reach them."""
    inputs = keras.Input((6,))
    backbone = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, name="inner")], name="backbone")
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(backbone(inputs)))
    with pytest.raises(ModelError, match="holds the nested model.* backbone.*build the model flat"):
        prune(model)
    assert [w.layer.name for w in wrappers(prune(model, layers=["head"]))] == ["head"]  # asked for


def test_a_layer_with_an_activity_regularizer_is_refused_by_name():
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(4, activity_regularizer=keras.regularizers.L2(1.0), name="act")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden))
    with pytest.raises(ModelError, match="layer 'act' has an activity_regularizer.*layers="):
        prune(model)
    assert [w.layer.name for w in wrappers(prune(model, layers=["out"]))] == ["out"]
