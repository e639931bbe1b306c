"""The structured latency study: a convnet with half its channels removed, timed side by side.

Latency needs no labels, so the models keep their initialization; what is compared is
the runtime's work.  Three variants: ``dense``; ``structured``, the same architecture
with ``ratio`` of every set of coupled channels removed by L1 norm and shrunk; and
``unstructured``, the dense model with as many weights zeroed in place (magnitude, per
layer), the kind of model tfmot's pruning produces, to show what zeros buy in time.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import metrics, models
from ..backend import keras
from ..sparsity.prune import prune, set_sparsity, strip
from ..structured import analyze, plan_channels, shrink
from .study import measure_variants, runs_table, write_study


def run_latency_study(out_dir: str | os.PathLike, *, model: str = "resnet20", ratio: float = 0.5,
                      rounds: int = 15, min_block_seconds: float = 0.25, seed: int = 0,
              models_dir: str | os.PathLike = "saved_models",
                      command: str | None = None) -> dict:
    """Write ``structured_<model>.{json,md,png}`` in ``out_dir`` (the models in
    ``models_dir/structured_<model>/``) and return the results."""
    out_dir = Path(out_dir)
    keras.utils.set_random_seed(seed)
    dense = models.build(model, input_shape=(32, 32, 3), num_classes=10)
    graph = analyze(dense)
    plan = plan_channels(dense, ratio, graph=graph)
    small = shrink(dense, plan, graph)
    zeroed = prune(dense, track_scores=False)
    sparsity = 1 - metrics.count_params(small) / metrics.count_params(dense)
    set_sparsity(zeroed, sparsity, "magnitude", scope="layer", keep_previous=False)
    unstructured = strip(zeroed)

    inputs = np.random.default_rng(seed).standard_normal((8, 32, 32, 3)).astype(np.float32)
    study = f"structured_{model}"
    runs, timed, _ = measure_variants(
        Path(models_dir), study, {"dense": dense, "structured": small, "unstructured": unstructured},
        inputs=inputs, rounds=rounds, min_block_seconds=min_block_seconds, extra_targets=("tf-cpu",))
    runs[1]["settings"] = {"ratio": ratio, "importance": "l1", "widths": plan.summary(graph)}
    runs[2]["settings"] = {"sparsity": round(sparsity, 4), "importance": "magnitude", "scope": "layer"}
    results = {
        "experiment": study,
        "description": (f"{model} (32x32x3, 10 classes) with {ratio:.0%} of every set of coupled "
                        "channels removed by L1 norm (structured), against the dense model and the "
                        "dense model with as many weights zeroed in place (unstructured), batch-1 "
                        "latency on TF-CPU and the LiteRT interpreter (XNNPACK) in one interleaved run."),
        "dataset": None, "model": model, "budget": "cpu",
        "command": command or f"kerasprune latency-study --model {model} --ratio {ratio}",
        "config": {"ratio": ratio, "rounds": rounds, "min_block_seconds": min_block_seconds, "seed": seed},
        "evaluated_on": None, "runs": runs,
        "findings": {
            "macs_ratio": round(runs[1]["macs"] / runs[0]["macs"], 4),
            "params_ratio": round(runs[1]["params"] / runs[0]["params"], 4),
            "speedup": {t: round(1 / r, 3) for t, r in runs[1]["latency_ratio"].items() if r},
            "unstructured_speedup": {t: round(1 / r, 3) for t, r in runs[2]["latency_ratio"].items() if r},
            "left_intact": graph.frozen,
        },
    }
    f = results["findings"]
    markdown = "\n".join([
        f"# {study}", "", results["description"], "", f"- reproduce: `{results['command']}`", "",
        *runs_table(runs), "", "## Findings", "",
        f"- `structured` keeps {f['macs_ratio']:.1%} of the MACs and {f['params_ratio']:.1%} of the params.",
        "- Speed-up of `structured` over `dense` (median of per-round ratios): "
        + ", ".join(f"{t} {v:.2f}x" for t, v in f["speedup"].items()) + ".",
        "- `unstructured` (as many zeros, same shapes): "
        + ", ".join(f"{t} {v:.2f}x" for t, v in f["unstructured_speedup"].items()) + ".",
        "", "Widths after shrinking: " + ", ".join(f"{k} {v}" for k, v in runs[1]["settings"]["widths"].items()),
    ])
    write_study(out_dir, study, results, markdown, timed)
    return results
