"""TFLite export is checked against Keras before anything is written."""
from __future__ import annotations

import numpy as np
import pytest

from kerasprune import export, models
from kerasprune.backend import keras
from kerasprune.errors import ExportError, ModelError


def test_export_matches_keras_and_writes_the_file(tmp_path):
    model = models.build("lenet5", input_shape=(28, 28, 1), num_classes=10)
    x = np.random.default_rng(1).standard_normal((5, 28, 28, 1)).astype("float32")
    result = export.to_tflite(model, tmp_path / "m.tflite", check_inputs=x)
    assert result.path.read_bytes() == result.content
    assert result.max_abs_diff <= 1e-4 and result.checked_examples == 5
    np.testing.assert_allclose(export.run_tflite(result.path, x), model.predict(x, verbose=0), atol=1e-5)
    assert "m.tflite" in repr(result) and len(repr(result)) < 300  # echoed in a notebook: not the file


def test_recurrent_models_export_with_builtin_ops():
    model = models.build("bilstm", input_shape=(12,), num_classes=2, vocab_size=50, units=8)
    result = export.to_tflite(model)
    ops = {op["op_name"] for op in export.interpreter(result.content)._get_ops_details()}
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in ops and "FlexTensorListReserve" not in ops


def test_a_disagreeing_conversion_raises_and_writes_nothing(tmp_path, monkeypatch):
    model = models.build("lenet_300_100", input_shape=(28, 28, 1), num_classes=10, width=0.1)
    monkeypatch.setattr(export.tflite, "run_tflite", lambda content, x: np.zeros((len(x), 10)))
    with pytest.raises(ExportError, match="disagrees with Keras by up to"):
        export.to_tflite(model, tmp_path / "m.tflite")
    assert list(tmp_path.iterdir()) == []


def test_tfmot_wrappers_are_stripped_before_conversion():
    import tensorflow_model_optimization as tfmot

    model = models.build("lenet_300_100", input_shape=(28, 28, 1), num_classes=10, width=0.1)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model)
    ops = {op["op_name"] for op in export.interpreter(export.to_tflite(pruned).content)._get_ops_details()}
    assert ops <= {"FULLY_CONNECTED", "RESHAPE", "SOFTMAX", "DELEGATE"}


def test_keras3_models_are_refused():
    import keras as keras3

    with pytest.raises(ModelError, match="Keras 3"):
        export.to_tflite(keras3.Sequential([keras3.Input((2,)), keras3.layers.Dense(1)]))


def test_multi_output_models_are_refused_by_name():
    inputs = keras.Input((2,))
    model = keras.Model(inputs, [keras.layers.Dense(1)(inputs), keras.layers.Dense(1)(inputs)], name="two")
    with pytest.raises(ExportError, match="'two' has 1 inputs and 2 outputs"):
        export.to_tflite(model)


def _token_model() -> keras.Model:
    return keras.Sequential([keras.Input((10,), dtype="int32"), keras.layers.Embedding(50, 4),
                             keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2)], name="tokens")


@pytest.mark.parametrize("check_inputs, message", [
    (np.zeros((5, 28, 28), "float32"), r"shape \(5, 28, 28\), examples of shape \(28, 28\); "
                                       r"'lenet_300_100' takes examples of shape \(28, 28, 1\) and "
                                       r"dtype float32: pass an array of shape \(n, 28, 28, 1\)"),
    (np.zeros((28, 28, 1), "float32"), r"It looks like one example: add a batch axis \(x\[None\]\)"),
    (np.zeros((0, 28, 28, 1), "float32"), r"check_inputs \(shape \(0, 28, 28, 1\)\) has no examples"),
    ([], r"has no examples; 'lenet_300_100' takes examples of shape \(28, 28, 1\)"),
    ([np.zeros((28, 28, 1)), np.zeros((28, 28))], r"not a rectangular array"),
    (np.full((2, 28, 28, 1), "a"), r"dtype <U1, which does not cast to float32"),
])
def test_check_inputs_that_do_not_fit_the_model_are_refused_with_the_expected_shape(check_inputs, message):
    model = models.build("lenet_300_100", input_shape=(28, 28, 1), num_classes=10, width=0.1)
    with pytest.raises(ExportError, match=message):
        export.to_tflite(model, check_inputs=check_inputs)


def test_float_check_inputs_for_token_ids_are_refused_and_wider_ints_accepted():
    with pytest.raises(ExportError, match=r"dtype float32, which does not cast to int32 without "
                                          r"changing values \(token ids, not embeddings"):
        export.to_tflite(_token_model(), check_inputs=np.zeros((3, 10), "float32"))
    ids = np.random.default_rng(0).integers(0, 50, size=(3, 10))  # numpy's default int64
    assert export.to_tflite(_token_model(), check_inputs=ids).checked_examples == 3


def test_a_savedmodel_is_converted_through_the_same_check(tmp_path, monkeypatch):
    from kerasprune import loading

    model = models.build("lenet_300_100", input_shape=(28, 28, 1), num_classes=10, width=0.1)
    model.save(tmp_path / "sm")
    signature = loading.load_saved_model(tmp_path / "sm").signatures["serving_default"]
    inputs = np.random.default_rng(0).standard_normal((4, 28, 28, 1)).astype("float32")
    exported = export.saved_model_to_tflite(tmp_path / "sm", signature, inputs)
    assert exported.max_abs_diff < 1e-5 and exported.checked_examples == 4
    monkeypatch.setattr(export.tflite, "run_tflite", lambda content, x: np.zeros((len(x), 10)))
    with pytest.raises(ExportError, match="disagrees with the SavedModel by up to"):
        export.saved_model_to_tflite(tmp_path / "sm", signature, inputs)
