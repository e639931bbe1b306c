"""The sparse inference study: does storing pruned weights sparse make TFLite faster here?

A MobileNetV2 whose 1x1 convolutions are pruned (per layer, by magnitude) is converted
twice, dense and with the sparse-weight optimization, and timed side by side against the
unpruned model.  File size needs no training and latency needs no labels, so the weights
are the initialization's: the sparse format's size depends on the sparsity pattern only.

The speed ratio is reported with the reason read from the runtime: whether the sparse
file's weights pass through DENSIFY ops (expanded to dense before the kernels run) and
which SIMD extensions this CPU has (XNNPACK's sparse kernels target ARM NEON and pre-AVX
x86; on AVX CPUs it runs its dense kernels).  The phone speed-up is the ``android``
target's to measure.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

from .. import benchmark, export, models
from ..backend import keras
from ..environment import cpu_flags
from ..sparsity.prune import prune, set_sparsity, strip
from .study import measure_variants, runs_table, write_study

DESCRIPTION = (
    "MobileNetV2 (32x32x3 input, 10 classes) with its 1x1 convolutions pruned per layer by "
    "magnitude, converted to TFLite dense and with the sparse-weight optimization "
    "(tf.lite.Optimize.EXPERIMENTAL_SPARSITY), timed side by side with the unpruned model on "
    "the LiteRT interpreter (XNNPACK). Weights are the initialization's: size and speed do "
    "not depend on training.")


def pointwise(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, keras.layers.Conv2D) and tuple(layer.kernel_size) == (1, 1) \
        and not isinstance(layer, keras.layers.DepthwiseConv2D)


def run_study(out_dir: str | os.PathLike, *, sparsity: float = 0.9, width: float = 1.0,
              rounds: int = 15, min_block_seconds: float = 0.25, seed: int = 0,
              models_dir: str | os.PathLike = "saved_models",
              command: str = "kerasprune sparse-study") -> dict:
    """Build, prune, convert, check and time; write ``sparse_inference.{json,md,png}`` in
    ``out_dir`` and the three ``.tflite`` files in ``models_dir/sparse_inference/``."""
    out_dir = Path(out_dir)
    keras.utils.set_random_seed(seed)
    dense = models.build("mobilenetv2", input_shape=(32, 32, 3), num_classes=10, width=width)
    wrapped = prune(dense, layers=pointwise, track_scores=False)
    set_sparsity(wrapped, sparsity, "magnitude", scope="layer", keep_previous=False)
    pruned = strip(wrapped)

    inputs = np.random.default_rng(seed).standard_normal((16, 32, 32, 3)).astype(np.float32)
    variants = {"dense": dense, "sparse": pruned, "pruned_dense_format": pruned}
    runs, timed, exports = measure_variants(Path(models_dir), "sparse_inference", variants, sparse=("sparse",),
                                            inputs=inputs, rounds=rounds,
                                            min_block_seconds=min_block_seconds)
    same = float(np.max(np.abs(export.run_tflite(exports["sparse"].content, inputs)
                               - export.run_tflite(exports["pruned_dense_format"].content, inputs))))
    for run in runs:
        run["settings"] = {"sparsity_1x1": sparsity if run["run"] != "dense" else 0.0,
                           "sparse_format": run["run"] == "sparse"}
    results = {
        "experiment": "sparse_inference", "description": DESCRIPTION, "dataset": None,
        "model": "mobilenetv2", "budget": "cpu", "command": command,
        "config": {"sparsity_1x1": sparsity, "width": width, "rounds": rounds,
                   "min_block_seconds": min_block_seconds, "seed": seed},
        "evaluated_on": None, "runs": runs,
        "findings": {
            "size_ratio_sparse_to_dense": round(runs[1]["tflite_bytes"] / runs[0]["tflite_bytes"], 4),
            "max_abs_diff_sparse_vs_pruned_dense_format": same,
            "latency_ratio_sparse_to_dense": dict(runs[1]["latency_ratio"]),
            "runtime": _runtime_evidence(benchmark.graph_stats(exports["sparse"].content),
                                         Path(models_dir) / "sparse_inference" / "sparse.tflite"),
        },
    }
    write_study(out_dir, "sparse_inference", results, _markdown(results, timed), timed)
    return results


def _runtime_evidence(graph: benchmark.GraphStats, path: Path) -> dict:
    """What the runtime does with the sparse file, read from it and from this CPU."""
    interp = export.interpreter(path)
    ops = [op["op_name"] for op in interp._get_ops_details()]  # the interpreter's own view
    flags = cpu_flags()
    x86_avx = "avx" in flags
    reason = []
    if graph.densified_at_load:
        reason.append(f"the converter stored {graph.sparse_tensors} weight tensors sparse behind "
                      f"{graph.ops['DENSIFY']} DENSIFY ops, which the interpreter runs once at "
                      "load, so the convolutions receive dense weights")
    if "DELEGATE" in ops:
        reason.append("the XNNPACK delegate took the graph and runs its dense kernels")
    if x86_avx:
        reason.append("this x86 CPU has AVX (" + ", ".join(sorted(f for f in flags if f.startswith("avx"))[:4])
                      + "), where XNNPACK has no sparse kernels (its sparse x86 path is SSE-only; "
                      "NEON on phones)")
    return {"ops": sorted(set(ops)), "densify_ops": graph.ops.get("DENSIFY", 0),
            "sparse_weight_tensors": graph.sparse_tensors, "xnnpack_delegate": "DELEGATE" in ops,
            "machine": platform.machine(), "cpu_simd": sorted(f for f in flags if f.startswith(("avx", "sse", "neon", "asimd"))),
            "why": "; ".join(reason) or "no sparse weights found in the file"}


def _markdown(results: dict, timed: dict) -> str:
    f = results["findings"]
    speed = ", ".join(f"{t}: {r:.3f}" for t, r in f["latency_ratio_sparse_to_dense"].items())
    lines = [
        "# sparse_inference", "", results["description"], "",
        f"- reproduce: `{results['command']}`", "",
        *runs_table(results["runs"]),
        "", "## Findings", "",
        f"- Size: the sparse file is {f['size_ratio_sparse_to_dense']:.3f}x the dense file.",
        f"- Outputs: the sparse file and the pruned model in dense format differ by at most "
        f"{f['max_abs_diff_sparse_vs_pruned_dense_format']:.3g}.",
        f"- Speed, sparse / dense latency here: {speed}.",
        f"- Why, from the runtime: {f['runtime']['why']}.",
        "- Where sparse pays in time: XNNPACK's sparse kernels on phone CPUs (1.3-2.4x in "
        "Elsen et al. 2020, 'Fast Sparse ConvNets'); measure it with `kerasprune bench "
        "--target android`. On every CPU, structured pruning (removing channels) is the path to speed.",
        "", benchmark.markdown(timed).split("\n", 1)[1],
    ]
    return "\n".join(lines)
