"""Quantized TFLite: real INT4/INT8 tensors in the file, checked against Keras first."""
from __future__ import annotations

import pytest

from kerasprune import export
from kerasprune import quantization as Q
from kerasprune.backend import keras
from kerasprune.errors import ConfigError, ExportError
from test_quantization import text_model, trained, vision_model

BITS = {"emb": 4, "conv": 4, "fc": 8}


def test_a_mixed_export_writes_int4_and_int8_tensors_read_from_the_file(tmp_path):
    model, x, *_ = trained(text_model())
    qat = Q.quantize_aware(model, BITS)
    result = export.to_tflite(qat, tmp_path / "mixed.tflite", check_inputs=x, mode="mixed", bits=BITS)
    ops = {op.op: op for op in export.weighted_ops(result.path.read_bytes())}
    assert ops["EMBEDDING_LOOKUP"].type == "int4" and ops["CONV_2D"].type == "int4"
    assert ops["FULLY_CONNECTED"].type == "int8"
    assert ops["EMBEDDING_LOOKUP"].bytes == 200 * 16 // 2  # two values a byte
    # the lookup reads the INT4 table itself; the convolution's weights are dequantized first
    assert not ops["EMBEDDING_LOOKUP"].dequantized and ops["CONV_2D"].dequantized
    # trained on the grid, the file computes what the Keras model computes
    assert result.max_abs_diff < 1e-4 and result.agreement == 1.0
    fp32 = export.to_tflite(model, check_inputs=x)
    assert result.bytes < fp32.bytes / 2  # a small model: the graph itself takes ~4 KB


def test_a_file_without_names_is_smaller_and_runs_the_same(tmp_path):
    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.lite.tools import flatbuffer_utils

    model, x, *_ = trained(vision_model())
    bits = {"c1": 8, "dw": 8, "sep": 4, "fc": 4}
    named = export.to_tflite(model, check_inputs=x, mode="mixed", bits=bits, min_agreement=0.5)
    bare = export.to_tflite(model, tmp_path / "bare.tflite", check_inputs=x, mode="mixed", bits=bits,
                            min_agreement=0.5, names=False)
    written = bare.path.read_bytes()
    assert written == bare.content and bare.bytes < named.bytes - 200
    graph = flatbuffer_utils.read_model_from_bytearray(bytearray(written)).subgraphs[0]
    assert not any(t.name for t in graph.tensors)
    assert export.run_tflite(written, x[:8]).tolist() == export.run_tflite(named.content, x[:8]).tolist()
    runner = Interpreter(model_content=written).get_signature_runner()  # its keys are kept
    (key,) = runner.get_input_details()
    assert next(iter(runner(**{key: x[:1]}).values())).shape == (1, 8)
    # the report still names each layer's weights (from the converter's file), the file does not
    assert [w.weight for w in bare.weights()] == [w.weight for w in named.weights()]
    assert all(w.weight.startswith("tensor ") for w in export.weighted_ops(written))


def test_every_mode_stores_the_weights_it_names(tmp_path):
    model, x, *_ = trained(vision_model())
    types = {}
    for mode in ("fp16", "dynamic", "int8"):
        result = export.to_tflite(model, tmp_path / f"{mode}.tflite", check_inputs=x, mode=mode,
                                  min_agreement=0.8)
        types[mode] = {op.type for op in result.weights()}
        assert 0.8 <= result.agreement <= 1.0
    # dynamic range leaves weights under 1024 values float (the converter's rule): fc has 1728
    assert types == {"fp16": {"float16"}, "dynamic": {"int8", "float32"}, "int8": {"int8"}}
    ptq = export.to_tflite(model, check_inputs=x, mode="mixed", min_agreement=0.5,
                           bits={"c1": 8, "dw": 4, "sep": 4, "fc": 4})
    stored = {op.op + ":" + op.type for op in ptq.weights()}
    # depthwise kernels keep 8 bits (no INT4 depthwise in TFLite), the rest take 4
    assert stored == {"CONV_2D:int8", "DEPTHWISE_CONV_2D:int8", "CONV_2D:int4", "FULLY_CONNECTED:int4"}


def test_a_quantized_file_that_disagrees_with_keras_is_refused_and_not_written(tmp_path, monkeypatch):
    model, x, *_ = trained(vision_model())
    monkeypatch.setattr(export.tflite, "run_tflite", lambda content, inputs: -model.predict(inputs, verbose=0))
    with pytest.raises(ExportError, match="same class as Keras for .* of 96 examples .*nothing was written"):
        export.to_tflite(model, tmp_path / "m.tflite", check_inputs=x, mode="dynamic")
    assert list(tmp_path.iterdir()) == []


def test_a_crash_during_a_mixed_export_leaves_no_file(tmp_path, monkeypatch):
    model, x, *_ = trained(text_model())

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    (tmp_path / "m.tflite").write_bytes(b"the previous file")
    monkeypatch.setattr(export.tflite.files, "fsync", crash, raising=False)
    monkeypatch.setattr("os.fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        export.to_tflite(model, tmp_path / "m.tflite", check_inputs=x, mode="mixed", bits=BITS,
                         min_agreement=0.5)
    assert [p.name for p in tmp_path.iterdir()] == ["m.tflite"]
    assert (tmp_path / "m.tflite").read_bytes() == b"the previous file"


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "mixed"}, "needs bits=.layer name: 4 or 8"),
    ({"mode": "fp32", "bits": BITS}, "bits=. is for mode='mixed'"),
    ({"mode": "mixed", "bits": {"emb": 4, "lstm": 8}}, "'lstm' is not a quantizable layer"),
    ({"mode": "mixed", "bits": BITS, "sparse": True}, "sparse format holds float32 or int8"),
    ({"mode": "mixed", "bits": BITS, "compute": "int"}, "compute=. must be one of float, dynamic"),
    ({"mode": "int4"}, "mode=. must be one of fp32, fp16, dynamic, int8, mixed"),
])
def test_bad_export_requests_say_what_to_change(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        export.to_tflite(text_model(), **kwargs)


def test_full_int8_asks_for_real_calibration_examples():
    with pytest.raises(ConfigError, match="calibrates its activations on real examples"):
        export.to_tflite(vision_model(), mode="int8")


def test_calibration_examples_that_do_not_fit_are_named_as_such():
    model, x, *_ = trained(vision_model())
    with pytest.raises(ExportError, match="representative has shape .*or leave representative out"):
        export.to_tflite(model, check_inputs=x, mode="int8", representative=x[:, :7])
    # the other modes calibrate nothing, so they never read it
    export.to_tflite(model, check_inputs=x, mode="dynamic", representative=x[:, :7], min_agreement=0.5)


def test_bits_for_weights_only_an_op_without_a_recipe_reads_are_refused():
    inputs = keras.Input((6, 4))
    x = keras.layers.Flatten()(keras.layers.Conv1DTranspose(3, 3, name="deconv")(inputs))
    content = export.to_tflite(keras.Model(inputs, keras.layers.Dense(2, name="fc")(x))).content
    with pytest.raises(ExportError, match="weights of deconv by TRANSPOSE_CONV cannot be stored in 4 or 8"):
        export.recipe.apply_bits(content, {"deconv": 4, "fc": 4})


def test_an_int4_tensor_of_odd_size_counts_its_values_not_its_padding():
    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.layers.Dense(3, name="fc", kernel_initializer="ones")(inputs))
    content = export.to_tflite(model, mode="mixed", bits={"fc": 4}).content
    (fc,) = export.weighted_ops(content)
    assert (fc.type, fc.params, fc.bytes) == ("int4", 15, 8)
    stats = export.graph_stats(content)
    assert (stats.params, stats.nonzero_params, stats.sparsity) == (15, 15, 0.0)


def test_a_model_the_default_delegate_rejects_runs_on_the_builtin_kernels(monkeypatch, caplog):
    from ai_edge_litert import interpreter as litert

    real = litert.Interpreter

    def picky(*args, **kwargs):
        if "experimental_op_resolver_type" not in kwargs:
            raise RuntimeError("Failed to apply XNNPACK delegate")
        return real(*args, **kwargs)

    content = export.to_tflite(vision_model()).content
    monkeypatch.setattr(litert, "Interpreter", picky)
    interp = export.interpreter(content)
    assert interp.get_input_details()[0]["shape"].tolist() == [1, 12, 12, 1]
    assert "XNNPACK delegate cannot run this model (Failed to apply XNNPACK delegate)" in caplog.text


def test_the_bytes_allocation_counts_are_the_bytes_the_file_grows_by():
    model, x, *_ = trained(vision_model())
    bits = {"c1": 8, "dw": 8, "sep": 4, "fc": 4}
    fp32 = export.to_tflite(model, check_inputs=x).bytes
    mixed = export.to_tflite(model, check_inputs=x, mode="mixed", bits=bits, min_agreement=0.5).bytes
    weights = Q.quantizable(model)
    predicted = (fp32 - 4 * sum(q.params for q in weights)
                 + sum(q.stored_bytes(bits[q.layer] if bits[q.layer] in q.bits else 8) for q in weights))
    assert abs(predicted - mixed) <= 30 * len(weights)  # a few bytes of metadata a tensor
