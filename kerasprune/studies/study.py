"""Studies without training: model variants converted, checked and timed side by side.

The sparse-format and structured latency studies measure what a file and a runtime do with
a model, which needs no labels: each variant is exported (checked against Keras), timed
in the same interleaved rounds, and recorded in the experiments' results schema.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import benchmark, export, files, metrics
from ..backend import keras
from ..benchmark import footprint
from ..benchmark.artifacts import Artifact
from ..environment import environment
from ..results import complete_results, complete_run

TARGETS = ("tflite@1", "tflite@2", "tflite@4")
NO_DATA = ("untrained models on random inputs: size and latency need no labels, and cifar10, "
           "which these models are built for, is not available offline here")
UNTRAINED = {"accuracy": NO_DATA, "f1": NO_DATA, "train_seconds": "not trained (0 epochs)"}


def measure_variants(models_dir: Path, study: str, variants: dict[str, keras.Model], *,
                     sparse: tuple[str, ...] = (), inputs: np.ndarray, targets=TARGETS,
                     rounds: int, min_block_seconds: float, extra_targets: tuple[str, ...] = ()):
    """Export every variant to ``models_dir/<study>/<name>.tflite`` and time them together.

    Returns the run records (ratios to the first variant), the bench result and the
    exports.  Names in ``sparse`` use the sparse-weight conversion.  ``extra_targets``
    (e.g. tf-cpu) time the Keras models as well.
    """
    exports = {n: export.to_tflite(m, check_inputs=inputs, sparse=n in sparse) for n, m in variants.items()}
    paths = {n: files.write_bytes(models_dir / study / f"{n}.tflite", e.content) for n, e in exports.items()}
    settings = {"throughput_batch": None, "rounds": rounds, "min_block_seconds": min_block_seconds}
    timed = benchmark.bench([Artifact(n, p, "tflite") for n, p in paths.items()], targets, **settings)
    if extra_targets:
        saved = []
        for n, m in variants.items():
            with files.atomic_path(models_dir / study / f"{n}.keras") as tmp:
                m.save(tmp)
            saved.append(Artifact(f"{n}.keras", models_dir / study / f"{n}.keras", "keras"))
        on_tf = benchmark.bench(saved, extra_targets, **settings)
        timed["results"] += on_tf["results"]
        timed["runs"] += on_tf["runs"]
        timed["benchmark"]["targets"] += on_tf["benchmark"]["targets"]
    runs = []
    for name, model in variants.items():
        rows = {r["target"]: r for r in timed["results"]
                if r["model"] in (name, f"{name}.keras") and r.get("latency")}
        first = rows[targets[0]]["latency"]
        runs.append(complete_run({
            "method": name, "run": name, **metrics.figures(model),
            "tflite_bytes": exports[name].bytes,
            "tflite_gzip_bytes": footprint.gzip_bytes(paths[name]),
            "tflite_max_abs_diff": exports[name].max_abs_diff,
            "latency_ms": round(first["median_ms"], 4), "latency": first,
            "latency_ratio": {t: r["ratio"] for t, r in rows.items()},
            "latency_by_target": {t: r["latency"] for t, r in rows.items()},
            "peak_memory_mb": rows[targets[0]]["peak_memory_mb"],  # added by loading and running it
            "epochs": 0,
        }, UNTRAINED))
    return runs, timed, exports


def write_study(out_dir: Path, study: str, results: dict, markdown: str, timed: dict) -> Path:
    """``<study>.json``, ``.md`` and ``.png`` (latency ratios) in ``out_dir``."""
    json_path = out_dir / f"{study}.json"
    record = {**results, "environment": environment(), "benchmark": timed["benchmark"]}
    files.write_json(json_path, complete_results(record, {"dataset": NO_DATA}))
    files.write_text(json_path.with_suffix(".md"), markdown)
    benchmark.summary.plot(timed, json_path.with_suffix(".png"))
    return json_path


def runs_table(runs: list[dict]) -> list[str]:
    """Markdown rows: size, params, MACs and latency ratios per target."""
    targets = list(runs[0]["latency_ratio"])
    lines = ["| run | sparsity | params | nonzero | MACs | TFLite bytes | size ratio | gzip bytes | "
             "latency ms (" + targets[0] + ") | " + " | ".join(f"ratio {t}" for t in targets) + " |",
             "|" + "---|" * (9 + len(targets))]
    for r in runs:
        ratios = " | ".join(f"{r['latency_ratio'].get(t, float('nan')):.3f}" for t in targets)
        lines.append(f"| `{r['run']}` | {r['sparsity']:.3f} | {r['params']} | {r['nonzero_params']} | "
                     f"{r['macs']} | {r['tflite_bytes']} | {r['tflite_bytes'] / runs[0]['tflite_bytes']:.3f} | "
                     f"{r['tflite_gzip_bytes']} | {r['latency_ms']:.3f} | {ratios} |")
    return lines
