"""The training-step benchmark times every variant on the experiment's settings."""
from __future__ import annotations

import textwrap

from kerasprune.studies.train_step import markdown, train_step_benchmark


def test_dense_tfmot_kerasprune_and_dynamic_sparse_steps_are_timed_side_by_side(tmp_path, mock_tfds):
    config = tmp_path / "tiny.yaml"
    config.write_text(textwrap.dedent("""
        experiment: tiny
        dataset: mnist
        model: lenet5
        methods: [{method: dense}, {method: adaptive, sparsity: 0.5, frequency: 20}]
        budgets:
          cpu:
            data: {batch_size: 4}
            train: {epochs: 1}
            finetune: {epochs: 1}
    """))
    result = train_step_benchmark(config, sparsity=0.5, rounds=2, steps=6, progress=None)
    runs = {r["run"]: r for r in result["runs"]}
    assert set(runs) == {"dense", "tfmot_gmp", "adaptive", "static", "rigl", "rigl_update"}
    assert all(r["step_ms"]["runs"] == 2 * 4 for r in runs.values())  # 5 begin-to-begin steps a block, the first skipped
    assert runs["dense"]["ratio_to_dense"] == 1.0 and runs["tfmot_gmp"]["ratio_to_tfmot"] == 1.0
    assert runs["adaptive"]["sparsity"] == 0.5 and runs["dense"]["sparsity"] == 0.0
    assert runs["static"]["ratio_to_static"] == 1.0
    for name in ("static", "rigl", "rigl_update"):  # sparse from their first step (regrown zeros add a little)
        assert 0.5 <= runs[name]["sparsity"] < 0.6
    assert runs["adaptive"]["latency_ms"] is None and "inference latency" in runs["adaptive"]["not_measured"]["latency_ms"]
    for run in runs.values():  # every variant is evaluated and exported after its timed steps
        assert 0 <= run["accuracy"] <= 1 and run["tflite_bytes"] > run["tflite_gzip_bytes"] > 0
    assert runs["adaptive"]["tflite_gzip_bytes"] < runs["dense"]["tflite_gzip_bytes"]  # half the weights are zeros
    assert result["mask_update_ms"] > 0
    # the update cost is spread over the config's own mask-update frequency
    assert result["mask_update_frequency"] == 20
    assert abs(result["mask_update_ms_per_step"] - result["mask_update_ms"] / 20) < 1e-3
    assert "| `adaptive` |" in markdown(result) and "one update per 20 steps" in markdown(result)
    assert "ratio to static" in markdown(result) and "| `rigl_update` |" in markdown(result)
