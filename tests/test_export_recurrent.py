"""Trained recurrent models export, and the exported file answers each example on its own.

TFLite's fused LSTM kernels keep their state in variable tensors between invocations; an
untrained model (outputs near 0.5) hides that, so these models are trained until they are
sure: "does token 7 occur in the sequence?"
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

from kerasprune import export
from kerasprune.backend import keras
from kerasprune.errors import ExportError

SEQ_LEN, VOCAB, TOKEN = 10, 50, 7
CELLS = {
    "lstm": lambda: keras.layers.LSTM(8),
    "bilstm": lambda: keras.layers.Bidirectional(keras.layers.LSTM(8)),
    "gru": lambda: keras.layers.GRU(8),
}


def _sequences(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random token ids, half of them with TOKEN at a random position (label 1)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, VOCAB, size=(n, SEQ_LEN)).astype("int32")
    x[x == TOKEN] = TOKEN + 1
    y = (np.arange(n) % 2).astype("int32")
    x[y == 1, rng.integers(0, SEQ_LEN, size=int(y.sum()))] = TOKEN
    return x, y


@functools.cache
def _trained(kind: str) -> tuple[keras.Model, np.ndarray]:
    """A model that has learnt the task, and 32 held-out inputs it is confident about."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((SEQ_LEN,), dtype="int32"), keras.layers.Embedding(VOCAB, 8),
                              CELLS[kind](), keras.layers.Dense(2, activation="softmax")], name=kind)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(*_sequences(512, seed=0), epochs=3, batch_size=32, verbose=0)
    x, y = _sequences(32, seed=1)
    p = model.predict(x, verbose=0)
    assert (p.argmax(1) == y).all() and np.abs(p - 0.5).min() > 0.3, "the toy task was not learnt"
    return model, x


@pytest.mark.parametrize("kind", CELLS)
def test_trained_recurrent_models_pass_the_export_check_with_shuffled_examples(kind):
    model, x = _trained(kind)
    shuffled = x[np.random.default_rng(2).permutation(len(x))]
    result = export.to_tflite(model, check_inputs=shuffled)
    assert result.checked_examples == len(x)
    assert result.max_abs_diff <= 1e-5  # as close as feed-forward models, far inside atol


@pytest.mark.parametrize("off, shift, flipped, passes", [(8, 0.02, False, True), (9, 0.02, False, False),
                                                       (1, 0.02, True, False), (1, 0.2, False, False)])
def test_a_recurrent_file_may_drift_on_a_quarter_of_the_examples_if_they_keep_their_class(
        off, shift, flipped, passes, tmp_path, monkeypatch):
    """Rounding amplified over a long sequence moves a few outputs a little; a wrong file
    moves many, or far, or across a class."""
    model, x = _trained("lstm")
    run = export.tflite.run_tflite

    def drifted(content, inputs):
        out = run(content, inputs).copy()
        out[:off] += np.array([-shift, shift]) if not flipped else out[:off, ::-1] - out[:off]
        return out

    monkeypatch.setattr(export.tflite, "run_tflite", drifted)
    path = tmp_path / "m.tflite"
    if passes:  # 8 of 32 off, by 0.02 (within 50 x atol), same class
        assert export.to_tflite(model, path, check_inputs=x).max_abs_diff == pytest.approx(shift, abs=1e-5)
    else:
        with pytest.raises(ExportError, match=f"{off} of them by more; nothing was written"):
            export.to_tflite(model, path, check_inputs=x)
        assert not path.exists()


def test_the_exported_output_does_not_depend_on_earlier_calls():
    model, x = _trained("lstm")
    content = export.to_tflite(model, atol=np.inf).content  # the runtime is under test here
    perm = np.random.default_rng(3).permutation(len(x))
    in_order, shuffled = export.run_tflite(content, x), export.run_tflite(content, x[perm])
    np.testing.assert_array_equal(shuffled, in_order[perm])
    np.testing.assert_allclose(in_order, model.predict(x, verbose=0), atol=1e-3)

    interp = export.interpreter(content)  # what the benchmark and the studies call directly
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]

    def answer(example: np.ndarray) -> np.ndarray:
        interp.set_tensor(inp["index"], example[None])
        interp.invoke()
        return interp.get_tensor(out["index"])[0]

    first = answer(x[0])
    answer(x[1])
    np.testing.assert_array_equal(answer(x[0]), first)


def test_a_deployed_app_without_a_reset_would_see_the_previous_state():
    """Why the reset is needed (to_tflite's docstring): the raw kernel carries state over."""
    from ai_edge_litert.interpreter import Interpreter

    model, x = _trained("lstm")
    interp = Interpreter(model_content=export.to_tflite(model).content)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    outputs = []
    for example in (x[0], x[1], x[0]):
        interp.set_tensor(inp["index"], example[None])
        interp.invoke()
        outputs.append(interp.get_tensor(out["index"])[0].copy())
    assert np.abs(outputs[2] - outputs[0]).max() > 1e-3


def test_only_a_model_with_state_pays_for_the_reset():
    """The benchmark times the interpreter's invoke: a feed-forward model's is left bare."""
    from kerasprune.export.flatbuffer import has_state

    lstm, _ = _trained("lstm")
    dense = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert has_state(export.to_tflite(lstm).content)
    assert not has_state(export.to_tflite(dense).content)
