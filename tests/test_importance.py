"""Every importance score, per weight or per channel, shares one interface and one namespace."""
from __future__ import annotations

import pytest

from kerasprune import importance, prune, set_sparsity
from kerasprune.backend import keras
from kerasprune.errors import ConfigError
from kerasprune.sparsity.prune import wrappers
from kerasprune.structured import analyze, channel_scores


def _mlp():
    inputs = keras.Input((6,))
    x = keras.layers.Dense(8, activation="relu", name="a")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(x))


def test_weight_and_channel_scores_are_registered_side_by_side():
    assert importance.names("weight") == ["magnitude", "taylor"]
    assert importance.names("channel") == ["l1", "l2", "activation_taylor", "mean_activation", "apoz"]
    assert all(isinstance(imp, importance.Importance) for imp in importance.REGISTRY.values())


def test_asking_one_kind_of_pruning_for_the_others_score_says_which_it_takes():
    with pytest.raises(ConfigError, match=r"'l1' scores channels \(structured pruning\); "
                                          "unstructured pruning takes magnitude, taylor"):
        set_sparsity(prune(_mlp()), 0.5, "l1")


def test_a_users_channel_score_plugs_into_structured_pruning():
    class Last:
        """Keeps the channels with the highest ids: easy to check."""

        name, unit = "by_id", "channel"

        def scores(self, graph, data=None, batches=8):
            return {c.id: float(c.id) for c in graph.channels}

    importance.register(Last())
    try:
        graph = analyze(_mlp())
        scores = channel_scores(graph, "by_id")
        assert scores == {c.id: float(c.id) for c in graph.channels}
    finally:
        importance.REGISTRY.pop("by_id")
    with pytest.raises(ConfigError, match="unit must be one of weight, channel"):
        importance.register(type("Odd", (), {"name": "odd", "unit": "head", "scores": None})())


def test_magnitude_through_the_shared_interface_matches_the_masks():
    model = prune(_mlp())
    set_sparsity(model, 0.5, "magnitude", scope="layer")
    scores = importance.lookup("magnitude", "weight").scores(wrappers(model))
    for wrapper, (score,) in zip(wrappers(model), scores):
        mask = wrapper.masks[0].numpy()
        assert score[mask == 0].max() <= score[mask == 1].min()
