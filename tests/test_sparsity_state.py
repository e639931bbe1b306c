"""A controller's state lives in the pruned model's weights, tagged with whose it is."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from kerasprune import prune
from kerasprune.backend import keras
from kerasprune.errors import ConfigError
from kerasprune.sparsity.prune import wrappers
from kerasprune.sparsity.schedules import FeedbackState
from kerasprune.sparsity.state import read_state, write_state


def _fields(state):  # stored as float32
    return dataclasses.asdict(state)


def _pruned():
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, name="a")(inputs)
    return prune(keras.Model(inputs, keras.layers.Dense(2, name="b")(x)))


def test_a_state_written_to_every_wrapper_reads_back(tmp_path):
    model = _pruned()
    assert read_state(model, "feedback", FeedbackState) is None  # fresh: nothing left there
    state = FeedbackState(started=1.0, level=0.6, previous_level=0.3, reference=0.98, steps=2.0)
    write_state(model, "feedback", state)
    assert _fields(read_state(model, "feedback", FeedbackState)) == pytest.approx(_fields(state))
    first, second = (w.state.numpy() for w in wrappers(model))
    np.testing.assert_array_equal(first, second)
    model.save(tmp_path / "m.keras")  # the state travels with the model file
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert _fields(read_state(loaded, "feedback", FeedbackState)) == pytest.approx(_fields(state))


def test_a_vector_of_another_layout_is_not_read_as_a_schedule():
    model = _pruned()
    legacy = [1.0, 0.8] + [0.0] * 14  # slot 0 was FeedbackState.started before the tag
    for wrapper in wrappers(model):
        wrapper.state.assign(legacy)
    assert read_state(model, "feedback", FeedbackState) is None


def test_a_state_too_large_for_the_wrapper_is_refused():
    class Huge:
        def as_vector(self):
            return [0.0] * 40

    with pytest.raises(ConfigError, match="does not fit the 15"):
        write_state(_pruned(), "feedback", Huge())
