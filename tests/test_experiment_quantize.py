"""A run's quantize block: the method's model quantized, exported and measured like any run."""
from __future__ import annotations

import pytest

from kerasprune.errors import ConfigError
from kerasprune.export import weighted_ops
from kerasprune.experiment.config import load_config
from test_experiment import _run, _write_config

CONFIG = """
experiment: quant
dataset: mnist
model: lenet_300_100
model_args: {width: 0.1}
methods:
  # an untrained tiny model has near ties between classes: agreement is only recorded
  - {method: quantized, tag: int8, quantize: {mode: int8, min_agreement: 0}}
  - {method: quantized, tag: mixed, quantize: {mode: mixed, eight_bit_fraction: 0.5, epochs: 1,
                                               min_agreement: 0}}
  - {method: structured, tag: all4, ratio: 0.3, quantize: {mode: mixed, bits: 4, min_agreement: 0,
                                                            names: false}}
  - {method: tfmot_gmp, tag: pqat, sparsity: 0.5, frequency: 1,
     quantize: {mode: tfmot_qat, epochs: 1, min_agreement: 0}}
budgets:
  cpu:
    data: {batch_size: 8, max_train_examples: 32}
    train: {epochs: 1}
    finetune: {epochs: 1, keep_best: true}
"""


def test_quantized_runs_record_their_bits_and_the_types_in_their_files(tmp_path, mock_tfds):
    results = _run(_write_config(tmp_path, "quant", CONFIG), tmp_path)
    runs = {r["run"]: r for r in results["runs"]}
    assert runs["quantized-int8"]["tflite_mode"] == "int8"
    # a quantized run is scored by its file; the Keras model's own accuracy is kept beside
    assert runs["quantized-int8"]["keras_accuracy"] == runs["dense"]["accuracy"]
    assert {w["type"] for w in runs["quantized-int8"]["tflite_weights"]} == {"int8"}

    mixed = runs["quantized-mixed"]
    assert set(mixed["bits"].values()) == {4, 8} and mixed["qat_epochs"] == 1 and mixed["epochs"] == 1
    assert {row["layer"] for row in mixed["sensitivity"]} == set(mixed["bits"])
    stored = {w["type"] for w in mixed["tflite_weights"]}
    assert stored == {"int4", "int8"} and 0 <= mixed["tflite_agreement"] <= 1
    assert (tmp_path / "out" / "quant" / "cpu" / "quantized-mixed" / "qat" / "history.csv").is_file()

    report = (tmp_path / "experiments" / "results" / "quant.md").read_text()
    assert "## Quantization of `quantized-mixed`" in report and "| layer | bits | params | stored as" in report
    assert "Weights stored as int8." in report

    # tfmot's own route: prune-preserving QAT keeps its zeros, its converter writes int8
    pqat = runs["tfmot_gmp-pqat_sparsity-0.5"]
    assert pqat["sparsity"] == pytest.approx(0.5, abs=0.02) and pqat["params"] == runs["dense"]["params"]
    assert {w["type"] for w in pqat["tflite_weights"]} == {"int8"} and pqat["qat_epochs"] == 1
    # it ends on the QAT phase's kept epoch, counted after the pruning phase's: what it is chosen on
    assert pqat["history"]["kept_epoch"] == [2] and len(pqat["history"]["val_accuracy"]) == 2

    hybrid = runs["structured-all4"]
    assert {w["type"] for w in hybrid["tflite_weights"]} == {"int4"}
    assert hybrid["tflite_bytes"] < runs["quantized-int8"]["tflite_bytes"] < runs["dense"]["tflite_bytes"]
    # written without tensor names; the record still says which layer each weight is
    written = (tmp_path / "out" / "quant" / "cpu" / "structured-all4" / "model.tflite").read_bytes()
    assert all(w.weight.startswith("tensor ") for w in weighted_ops(written))
    assert all("/" in w["weight"] for w in hybrid["tflite_weights"])


@pytest.mark.parametrize("block, message", [
    ("{mode: int4}", "quantize.mode must be one of fp16, dynamic, int8, mixed"),
    ("{mode: mixed}", "needs exactly one of bits, byte_budget, file_fraction"),
    ("{mode: int8, bits: 4}", "mode int8 is post-training .* bits belong to mode mixed"),
    ("{mode: mixed, bits: 3}", "quantize.bits is 4, 8 or"),
    ("{mode: mixed, bits: 4, epoch: 2}", "unknown key.* epoch; it takes"),
    ("{mode: mixed, file_fraction: 1.5}", r"file_fraction must be a number in \(0, 1\]"),
    ("{mode: mixed, tolerance: -0.1}", r"quantize.tolerance must be a number >= 0"),
    ("{mode: tfmot_qat, bits: 4}", "tfmot_qat is tfmot's 8-bit scheme .* bits belong to mode mixed"),
    ("{mode: int8, names: 0}", "quantize.names must be true or false, got 0"),
])
def test_a_bad_quantize_block_is_refused_before_anything_trains(tmp_path, block, message):
    config = _write_config(tmp_path, "bad", CONFIG.replace("{mode: int8, min_agreement: 0}}", block + "}"))
    with pytest.raises(ConfigError, match=message):
        load_config(config)
