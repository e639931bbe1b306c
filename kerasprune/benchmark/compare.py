"""Side by side: several models on several targets in one call, as ratios to a baseline.

On a shared, noisy machine absolute milliseconds move from one minute to the next; ratios
of models timed in the same interleaved rounds do not.  Every experiment's latency figures
come from here.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from ..checks import number
from ..environment import environment
from ..errors import ConfigError
from ..results import complete_results, complete_run
from . import footprint
from .android import AndroidTarget
from .artifacts import GRAPH_FIGURES, Artifact, artifact
from .energy import SOURCE, PowerMeter, estimate_tflite_uj
from .targets import DEFAULT_THREADS, Target, TFLiteTarget, TFTarget
from .timing import CpuSteal, interleaved, ratio

DEFAULT_TARGETS = ("tf-cpu", "tf-gpu", "tflite")
NO_DATA = ("a benchmark feeds random inputs, and no experiment result.json beside the file "
           "describes it")
FROM_RUN = ("accuracy", "f1", "train_seconds")  # taken from the run that made the model
FLATBUFFER_FIGURES = ("tflite_bytes", "tflite_gzip_bytes", "graph", "energy")


def bench(
    models: Sequence[str | os.PathLike | Artifact],
    targets: Sequence[str | Target] = DEFAULT_TARGETS,
    *,
    baseline: str | None = None,
    throughput_batch: int | None = 32,
    rounds: int = 7,
    min_block_seconds: float = 0.25,
    warmup: int = 10,
    android: dict | None = None,
    progress: Callable[[str], None] | None = print,
    name: str = "bench",
    command: str | None = None,
    safe_mode: bool = True,
) -> dict:
    """Time ``models`` on ``targets`` and return a result in the results schema.

    ``baseline`` names the model ratios are taken to (default: the first).  Batch-1 latency
    is always timed; ``throughput_batch`` adds throughput at that batch size (None: skip).
    ``runs`` holds one record per model (figures from its first timed batch-1 row, LiteRT
    at one thread first), ``results`` every target and batch.  ``safe_mode=False`` lets
    files with serialized Python code (Lambda layers) load and run it.
    """
    rounds = number(rounds, "bench: rounds", low=2, integer=True)
    min_block_seconds = number(min_block_seconds, "bench: min_block_seconds", low=0.0, low_open=True)
    if throughput_batch is not None:
        throughput_batch = number(throughput_batch, "bench: throughput_batch", low=1, integer=True)
    resolved = [t for t in targets if isinstance(t, Target)] + parse_targets(
        [t for t in targets if not isinstance(t, Target)], android)
    artifacts = _unique([m if isinstance(m, Artifact) else artifact(m, safe_mode=safe_mode)
                         for m in models])
    if not artifacts:
        raise ConfigError("bench: give at least one model (.keras, .h5, .tflite or SavedModel).")
    for a in artifacts:
        # one input of known shape (or a ConfigError that names the model), and the token ids
        # it takes (a SavedModel's read from its conversion), before any memory is measured
        a.example(1)
    names = [a.name for a in artifacts]
    baseline = baseline or names[0]
    if baseline not in names:  # 'dense' given, 'dense.tflite' and 'dense.keras' loaded
        baseline = next((n for n in names if n.startswith(f"{baseline}.")), baseline)
    if baseline not in names:
        raise ConfigError(f"bench: baseline '{baseline}' is not one of the models ({', '.join(names)}).")
    say = progress or (lambda _: None)

    rows: list[dict] = []
    with CpuSteal() as steal:
        for target in resolved:
            for batch in [1] + ([throughput_batch] if throughput_batch and throughput_batch > 1 else []):
                rows += _time_target(artifacts, target, batch, baseline, rounds=rounds,
                                     min_block_seconds=min_block_seconds, warmup=warmup, say=say)
    return complete_results({
        "experiment": name,
        "description": f"{len(artifacts)} model(s) timed side by side on "
                       f"{', '.join(t.name for t in resolved)}, as ratios to {baseline}.",
        "dataset": None, "model": None, "budget": None, "command": command,
        "environment": environment(),
        "benchmark": {"baseline": baseline, "targets": [t.name for t in resolved],
                      "throughput_batch": throughput_batch, "rounds": rounds,
                      "min_block_seconds": min_block_seconds, "warmup": warmup,
                      "energy_table": SOURCE, "power": _power_availability(),
                      "cpu_steal_fraction": steal.fraction},
        "runs": [_describe(a, [r for r in rows if r["model"] == a.name]) for a in artifacts],
        "results": rows,
    }, {"dataset": "random inputs: timing needs no data",
        "model": "several models, one per run",
        "budget": "files timed as they are, not an experiment budget",
        "command": "called from Python, not from the command line"})


def _time_target(artifacts: list[Artifact], target: Target, batch: int, baseline: str, *,
                 rounds: int, min_block_seconds: float, warmup: int,
                 say: Callable[[str], None]) -> list[dict]:
    rows, blocks, memory = {}, {}, {}
    for a in artifacts:
        reason = target.unavailable(a, batch)  # converts first: the converter is no part of the peak
        rows[a.name] = {"model": a.name, "target": target.name, "batch": batch,
                        "unavailable": reason}
        if reason:
            continue
        before = footprint.current_rss_mb()
        with footprint.PeakMemory() as peak:
            blocks[a.name] = target.block(a, batch)
            blocks[a.name](max(1, warmup))
        memory[a.name] = round(max(0.0, peak.mb - before), 1)
        if runtime := target.runtime(a):
            rows[a.name]["runtime"] = runtime
    if blocks:
        say(f"bench: {target.name}, batch {batch}: {len(blocks)} model(s), {rounds} rounds")
        meters = {n: [] for n in blocks}
        stats, medians = interleaved(
            blocks, rounds=rounds, warmup=warmup, min_block_seconds=min_block_seconds,
            batch=batch, meter=lambda n: _meter(target, meters[n]))
        for n, s in stats.items():
            joules = [m.joules for m in meters[n] if m.joules is not None]
            rows[n].update(
                latency=s.as_dict(), peak_memory_mb=memory[n],
                ratio=round(ratio(medians[n], medians[baseline]), 4) if baseline in medians else None,
                # every metered block (reruns too) ran runs/blocks inferences
                measured_uj=round(sum(joules) / len(joules) / (s.runs / s.blocks) * 1e6, 3)
                if joules else None)
    return list(rows.values())


def _meter(target: Target, kept: list[PowerMeter]) -> PowerMeter | None:
    """A fresh meter for one block, kept to be read afterwards (the phone has none)."""
    if not isinstance(target, (TFTarget, TFLiteTarget)):
        return None
    kept.append(PowerMeter("gpu" if isinstance(target, TFTarget) and target.device == "GPU" else "cpu"))
    return kept[-1]


def _describe(a: Artifact, rows: list[dict]) -> dict:
    """The model's run record: its footprint, its flatbuffer's figures, and the figures of
    its first timed row; a model without a flatbuffer says why for each figure it lacks."""
    timed = sorted((r for r in rows if r.get("latency") and r["batch"] == 1),
                   key=lambda r: r["target"] != "tflite@1")
    first = timed[0] if timed else {}
    run = {"method": a.kind, "run": a.name, "name": a.name, "path": str(a.path), "kind": a.kind,
           "inputs": a.inputs(), **a.footprint(), **_flatbuffer_figures(a),
           "latency_ms": round(first["latency"]["median_ms"], 4) if first else None,
           "latency_target": first.get("target"), "peak_memory_mb": first.get("peak_memory_mb"),
           **_from_run(a)}
    f1 = NO_DATA if "tflite_mode" not in (a.run_record or {}) else (
        "its run scored the quantized file; the Keras model's F1 was not recorded")
    no_flatbuffer = {k: f"it has no TFLite model: {a.unconvertible()}"
                     for k in (*FLATBUFFER_FIGURES, *GRAPH_FIGURES) if run[k] is None}
    done = complete_run(run, {"accuracy": NO_DATA, "f1": f1, "train_seconds": "not trained "
                              "here, and no experiment result.json beside the file says how long "
                              "it took",
                              "latency_ms": "no target could run it at batch 1",
                              "peak_memory_mb": "no target could run it at batch 1",
                              **no_flatbuffer})
    if no_flatbuffer:  # complete_run keeps the schema's reasons; graph and energy are ours
        done["not_measured"] = {**done["not_measured"], **no_flatbuffer}
    return done


def _flatbuffer_figures(a: Artifact) -> dict:
    """The TFLite model's bytes, graph and estimated energy (None each without one)."""
    if a.graph is None:
        return dict.fromkeys(FLATBUFFER_FIGURES)
    content = a.tflite()
    return {"tflite_bytes": len(content), "tflite_gzip_bytes": footprint.gzip_size(content),
            "graph": a.graph.as_dict(), "energy": estimate_tflite_uj(content, a.graph)}


def _from_run(a: Artifact) -> dict:
    """The figures the run that made ``a`` recorded for it: a quantized run's accuracy is its
    ``.tflite`` file's, so its Keras model gets the Keras accuracy recorded beside it."""
    record = a.run_record or {}
    if a.kind != "tflite" and "tflite_mode" in record:
        return {"accuracy": record.get("keras_accuracy"), "f1": None,
                "train_seconds": record.get("train_seconds")}
    return {k: record.get(k) for k in FROM_RUN}


def _power_availability() -> str:
    with PowerMeter("cpu") as meter:
        pass
    return meter.unavailable or "measured (RAPL)"


def _unique(artifacts: list[Artifact]) -> list[Artifact]:
    """Disambiguate equal names: by kind (``dense/model.keras`` and ``dense/model.tflite``),
    then by as much of the path as it takes (``adaptive_mnist/cpu/dense/model.tflite``)."""
    def clashes() -> set[str]:
        seen: dict[str, int] = {}
        for a in artifacts:
            seen[a.name] = seen.get(a.name, 0) + 1
        return {n for n, c in seen.items() if c > 1}

    clashing = clashes()
    for a in artifacts:
        if a.name in clashing:
            a.name = f"{a.name}.{a.kind}"
    depth = 2
    while (clashing := clashes()) and depth <= max(len(a.path.parts) for a in artifacts):
        for a in artifacts:
            if a.name in clashing:
                a.name = "/".join(a.path.parts[-depth:])
        depth += 1
    if clashes():
        raise ConfigError("bench: two models have the same name; name them NAME=PATH.")
    return artifacts


def parse_targets(names: list[str], android_options: dict | None = None) -> list[Target]:
    """``tf-cpu``, ``tf-gpu``, ``tflite[@N]``, ``tflite-sparse[@N]``, ``android[@N]``.

    Without ``@N``, ``tflite`` expands to 1, 2 and 4 threads and the others to one thread.
    A thread count the target would drop (TensorFlow sizes its own thread pools) or an
    empty one (``tflite@``) is refused, not read as the default.
    """
    targets: list[Target] = []
    for text in names:
        base, at, threads = text.partition("@")
        if at and base in ("tf-cpu", "tf-gpu"):
            raise ConfigError(f"bench: target '{text}': TensorFlow targets take no thread count "
                              f"(TensorFlow sizes its own thread pools); give '{base}', or "
                              "tflite@N for the LiteRT interpreter at N threads.")
        try:
            counts = [int(threads)] if at else None
        except ValueError:
            counts = None
        if at and (counts is None or counts[0] < 1):
            raise ConfigError(f"bench: target '{text}': the thread count after '@' must be a "
                              "positive integer, e.g. tflite@2 (or no '@' for the default).")
        if base in ("tf-cpu", "tf-gpu"):
            targets.append(TFTarget(base[3:].upper()))
        elif base == "tflite":
            targets += [TFLiteTarget(n) for n in counts or DEFAULT_THREADS]
        elif base == "tflite-sparse":
            targets += [TFLiteTarget(n, sparse=True) for n in counts or (1,)]
        elif base == "android":
            targets += [AndroidTarget(n, **(android_options or {})) for n in counts or (1,)]
        else:
            raise ConfigError(f"bench: unknown target '{text}'; choose from tf-cpu, tf-gpu, "
                              "tflite[@threads], tflite-sparse[@threads], android[@threads].")
    return targets
