"""Energy per inference: the documented estimate, and power counters where they exist."""
from __future__ import annotations

import pytest

from kerasprune import export
from kerasprune.backend import keras
from kerasprune.benchmark import energy, graph_stats


def test_the_estimate_follows_the_documented_table():
    # 1e6 float MACs (4.6 pJ), 4000 weight bytes from DRAM (160 pJ), 8000 activation bytes (1.25 pJ)
    e = energy.estimate_uj(1_000_000, 4000, 8000)
    assert e["compute_uj"] == pytest.approx(4.6)
    assert e["dram_uj"] == pytest.approx(0.64)
    assert e["sram_uj"] == pytest.approx(0.01)
    assert e["estimated_uj"] == pytest.approx(4.6 + 0.64 + 0.01)
    assert energy.estimate_uj(1_000_000, 0, 0, "int8")["compute_uj"] == pytest.approx(0.23)


def test_sparse_weights_the_runtime_densifies_at_load_are_charged_dense():
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(16, 3, name="c")(inputs)
    x = keras.layers.Conv2D(16, 1, name="pw")(x)
    model = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(x)))
    for name in ("c", "pw"):
        kernel = model.get_layer(name).kernel
        value = kernel.numpy()
        value.reshape(-1)[: int(0.9 * value.size)] = 0.0
        kernel.assign(value)
    sparse, dense = (export.to_tflite(model, sparse=s).content for s in (True, False))
    stored = graph_stats(sparse)
    assert stored.densified_at_load and stored.weight_bytes < graph_stats(dense).weight_bytes
    read = energy.estimate_tflite_uj(sparse, stored)["dram_uj"]
    assert read == energy.estimate_tflite_uj(dense, graph_stats(dense))["dram_uj"]


def test_weights_dequantized_before_the_op_are_charged_float32_macs_and_bytes():
    """An fp16 file's weights are turned to float32 once, at load: every inference then
    multiplies and reads float32, as the float file does."""
    inputs = keras.Input((512,))
    model = keras.Model(inputs, keras.layers.Dense(512)(keras.layers.Dense(512)(inputs)))
    macs = 2 * 512 * 512
    estimates = {}
    for mode, pj in (("fp32", 3.7 + 0.9), ("fp16", 3.7 + 0.9), ("dynamic", 0.2 + 0.03)):
        content = export.to_tflite(model, mode=mode, min_agreement=0.0).content
        estimates[mode] = energy.estimate_tflite_uj(content, graph_stats(content))
        assert estimates[mode]["compute_uj"] == pytest.approx(macs * pj / 1e6, abs=1e-3), mode
    assert estimates["fp16"]["dram_uj"] == estimates["fp32"]["dram_uj"]
    assert estimates["dynamic"]["dram_uj"] < estimates["fp32"]["dram_uj"] / 3  # int8 kernels read int8


def test_without_rapl_the_meter_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(energy.PowerMeter, "RAPL", tmp_path)
    with energy.PowerMeter() as meter:
        pass
    assert meter.joules is None and "no RAPL counters" in meter.unavailable


def test_rapl_counters_are_read_as_joules(tmp_path, monkeypatch):
    counter = tmp_path / "intel-rapl:0" / "energy_uj"
    counter.parent.mkdir()
    counter.write_text("1000000\n")
    monkeypatch.setattr(energy.PowerMeter, "RAPL", tmp_path)
    with energy.PowerMeter() as meter:
        counter.write_text("3500000\n")
    assert meter.unavailable is None and meter.joules == pytest.approx(2.5)
