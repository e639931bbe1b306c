"""The structured latency study records the three variants side by side (no times asserted)."""
from __future__ import annotations

import json

from kerasprune.results import RUN_FIELDS
from kerasprune.studies.structured_latency import run_latency_study


def test_the_study_writes_dense_structured_and_unstructured_runs(tmp_path):
    results = run_latency_study(tmp_path, model="resnet20", ratio=0.5, rounds=2,
                                min_block_seconds=0.005, models_dir=tmp_path / "models")
    runs = {r["run"]: r for r in results["runs"]}
    assert list(runs) == ["dense", "structured", "unstructured"]
    assert results["findings"]["macs_ratio"] <= 0.30
    # as many weights zeroed as the structured model lost (BatchNorm and biases are kept)
    assert runs["unstructured"]["nonzero_params"] <= runs["structured"]["params"] * 1.05
    assert set(runs["structured"]["latency_ratio"]) == {"tflite@1", "tflite@2", "tflite@4", "tf-cpu"}
    saved = json.loads((tmp_path / "structured_resnet20.json").read_text())
    assert all(f in run for run in saved["runs"] for f in RUN_FIELDS)
    assert "not available offline" in saved["runs"][0]["not_measured"]["accuracy"]
    assert saved["runs"][0]["peak_memory_mb"] is not None
    assert [r["run"] for r in saved["runs"]] == ["dense", "structured", "unstructured"]
    assert (tmp_path / "models" / "structured_resnet20" / "structured.tflite").exists()
    assert "Speed-up of `structured`" in (tmp_path / "structured_resnet20.md").read_text()
