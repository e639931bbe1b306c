"""The sparse inference study: smaller file, same outputs, speed ratio with its reason."""
from __future__ import annotations

import json

from kerasprune.studies.sparse_inference import run_study


def test_the_study_reports_size_outputs_speed_and_why(tmp_path):
    results = run_study(tmp_path, sparsity=0.9, width=0.35, rounds=2, min_block_seconds=0.01,
                        models_dir=tmp_path / "models")
    runs = {r["run"]: r for r in results["runs"]}
    assert set(runs) >= {"dense", "sparse"}
    f = results["findings"]
    assert f["size_ratio_sparse_to_dense"] <= 0.6
    assert f["max_abs_diff_sparse_vs_pruned_dense_format"] == 0.0
    assert runs["sparse"]["sparsity"] > 0.8 and runs["dense"]["sparsity"] == 0.0
    assert set(f["latency_ratio_sparse_to_dense"]) == {"tflite@1", "tflite@2", "tflite@4"}
    runtime = f["runtime"]
    assert runtime["densify_ops"] > 0 and runtime["sparse_weight_tensors"] > 0
    assert "DENSIFY" in runtime["why"]
    saved = json.loads((tmp_path / "sparse_inference.json").read_text())
    assert saved["findings"] == json.loads(json.dumps(f))
    report = (tmp_path / "sparse_inference.md").read_text()
    assert "Why, from the runtime" in report and (tmp_path / "sparse_inference.png").exists()
    assert (tmp_path / "models" / "sparse_inference" / "sparse.tflite").exists()
