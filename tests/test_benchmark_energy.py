"""Energy per inference: the documented estimate, and power counters where they exist."""
from __future__ import annotations

import pytest

from kerasprune.benchmark import energy


def test_the_estimate_follows_the_documented_table():
    # 1e6 float MACs (4.6 pJ), 4000 weight bytes from DRAM (160 pJ), 8000 activation bytes (1.25 pJ)
    e = energy.estimate_uj(1_000_000, 4000, 8000)
    assert e["compute_uj"] == pytest.approx(4.6)
    assert e["dram_uj"] == pytest.approx(0.64)
    assert e["sram_uj"] == pytest.approx(0.01)
    assert e["estimated_uj"] == pytest.approx(4.6 + 0.64 + 0.01)
    assert energy.estimate_uj(1_000_000, 0, 0, "int8")["compute_uj"] == pytest.approx(0.23)


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
