"""Run an experiment end to end: baseline, each method, measurement, export, report.

Each run writes ``saved_models/<experiment>/<budget>/<run>/`` and its ``result.json`` last;
a rerun of the same command skips runs whose result exists with the same config
fingerprint (:mod:`.cache`), and a run killed mid-training resumes from its last epoch.
So a long experiment can be stopped and continued at any time; a run killed in the
quantization-aware phase of its ``quantize`` block goes on from its method's kept model
(:func:`.quantize.after_method`).  The results file is written once, complete: until then
the runs done so far are in ``results.partial.json`` beside the models.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .. import benchmark, checks, export, files, loading, metrics
from ..backend import keras
from ..benchmark import footprint
from ..data import Data, arrays, load
from ..environment import environment
from ..metrics.quality import predicted_classes, unit_threshold
from ..random_state import layer_generators
from ..results import complete_results, complete_run
from . import cache, quantize, traffic
from .config import load_config
from .registry import METHODS, Outcome, RunContext
from .report import write_report
from .spec import BASELINE, ExperimentConfig, RunSpec, phase_of

Log = Callable[[str], None]
#: the results of the runs finished so far, under the experiment's models folder
PARTIAL = "results.partial.json"


def _print(message: str) -> None:
    print(message, flush=True)


def results_paths(config: ExperimentConfig, results_dir: str | os.PathLike | None) -> tuple[Path, Path]:
    """Where the results JSON and the report go: ``<config dir>/results/<name>[.<budget>]``."""
    folder = Path(results_dir) if results_dir else config.path.parent / "results"
    stem = config.name if config.budget.name == "cpu" else f"{config.name}.{config.budget.name}"
    return folder / f"{stem}.json", folder / f"{stem}.md"


def run_experiment(
    config_path: str | os.PathLike,
    *,
    budget: str = "cpu",
    data_dir: str | os.PathLike | None = None,
    out_dir: str | os.PathLike = "saved_models",
    results_dir: str | os.PathLike | None = None,
    only: list[str] | None = None,
    fresh: bool = False,
    download: bool = False,
    command: str | None = None,
    log: Log = _print,
    seed: int | None = None,
) -> dict:
    """Run (or resume) every run of the config and write the results JSON and report.

    ``seed`` repeats the experiment with another seed as ``<name>.seed<seed>`` (its own
    results and models), so a difference between methods can be checked against seeds.
    """
    config = load_config(config_path, budget)
    if seed is not None and checks.seed(seed, "--seed") != config.seed:
        config = dataclasses.replace(config, seed=seed, name=f"{config.name}.seed{seed}")
    json_path, report_path = results_paths(config, results_dir)
    root = Path(out_dir) / config.name / budget
    actions = cache.actions(config, root, only, fresh)
    cache.refuse_to_drop_results(actions, json_path, root, only)
    cache.forget_runs_from(root, config, actions)
    log(f"kerasprune: experiment '{config.name}' ({config.dataset}, {config.budget.model}, "
        f"budget {budget}): {len(config.runs)} runs -> {root}")

    started = time.perf_counter()
    data = load(config.dataset, data_dir=data_dir, seed=config.seed, download=download,
                **config.budget.data)
    log(f"  data: {data.train_examples} training examples, evaluated on tfds split "
        f"'{data.test_split}' (loaded in {time.perf_counter() - started:.1f}s)")

    results = {
        "experiment": config.name,
        "description": config.description,
        "dataset": config.dataset,
        "model": config.budget.model,
        "budget": budget,
        "command": command or _default_command(config, budget),
        "environment": environment(),
        "config": config.raw["budgets"][budget],
        "evaluated_on": data.test_split,
        "runs": [],
    }
    baseline_dir = root / BASELINE
    for index, run in enumerate(config.runs, 1):
        run_dir = root / run.run_id
        label = f"[{index}/{len(config.runs)}] {run.run_id}"
        action = actions[run.run_id]
        if action == "keep":
            log(f"{label}: done earlier, kept ({run_dir / 'result.json'})")
            # the same fingerprint means the same config: its settings are written as now
            cached = cache.cached(run_dir, cache.fingerprint(config, run))
            results["runs"].append({**cached, **_identity(config, run, data)})
            continue
        if action != "run":
            if action == "stale":
                log(f"{label}: left out: the baseline it started from was retrained")
            continue
        log(f"{label}: running")
        record = _run_one(config, run, data, run_dir, baseline_dir, label, log)
        results["runs"].append(record)
        # partial results survive a later failure, beside the models: the results file
        # (perhaps committed, with runs not yet redone) is written only complete
        files.write_json(root / PARTIAL, results)

    _time_side_by_side(results, root, log)
    if "traffic" in config.raw and (baseline_dir / "model.keras").is_file():
        traffic.run(results, config, data, baseline_dir / "model.keras", root, log)
    results["runs"] = [complete_run(r) for r in results["runs"]]
    results = complete_results(results)
    files.write_json(json_path, results)
    (root / PARTIAL).unlink(missing_ok=True)
    write_report(results, report_path)
    log(f"kerasprune: finished in {time.perf_counter() - started:.0f}s; results {json_path}, "
        f"report {report_path}")
    return results


def _time_side_by_side(results: dict, root: Path, log: Log) -> None:
    """Time every run's TFLite model in the same interleaved rounds, as ratios to dense, at
    one and two threads, and estimate each one's energy from its graph.

    Runs trained at different moments of a shared machine must not be timed at those
    moments: one benchmark session at the end gives latencies that compare.
    """
    models = {r["run"]: root / r["run"] / "model.tflite" for r in results["runs"]}
    models = {run: path for run, path in models.items() if path.is_file()}
    if not models:
        return
    base = BASELINE if BASELINE in models else next(iter(models))
    timed = benchmark.bench([benchmark.artifact(path, name=run) for run, path in models.items()],
                            ["tflite@1", "tflite@2"], baseline=base, throughput_batch=None,
                            progress=log)
    rows = {(row["model"], row["target"]): row for row in timed["results"]}
    described = {run["run"]: run for run in timed["runs"]}
    for record in results["runs"]:
        one, two = rows.get((record["run"], "tflite@1")), rows.get((record["run"], "tflite@2"))
        if one and one.get("latency"):
            record.update(latency=one["latency"], latency_ms=round(one["latency"]["median_ms"], 4),
                          latency_ratio=one["ratio"], runtime=one.get("runtime"))
        if two and two.get("latency"):
            record.update(latency_2t_ms=round(two["latency"]["median_ms"], 4),
                          latency_2t_ratio=two["ratio"])
        if record["run"] in described:  # what the file was fed, and its energy estimate
            record.update({k: described[record["run"]][k] for k in ("energy", "inputs")})
    results["benchmark"] = timed["benchmark"]


def _default_command(config: ExperimentConfig, budget: str) -> str:
    path = config.path
    try:
        path = path.resolve().relative_to(Path.cwd())
    except ValueError:
        pass
    return f"kerasprune experiment {shlex.quote(str(path))} --budget {budget}"


def _run_one(config: ExperimentConfig, run: RunSpec, data: Data, run_dir: Path,
             baseline_dir: Path, label: str, log: Log) -> dict:
    method = METHODS[run.method]
    run_dir.mkdir(parents=True, exist_ok=True)
    cache.forget_other_config(run_dir, cache.fingerprint(config, run), log, label)
    keras.utils.set_random_seed(config.seed)

    def baseline() -> keras.Model:
        return loading.load_model(baseline_dir / "model.keras")

    if "batch_size" in run.training:
        data = data.rebatched(run.training["batch_size"])
    ctx = RunContext(data, config.budget.for_run(run.training), config.seed, run_dir, label, baseline)
    started = time.perf_counter()
    with footprint.PeakMemory() as memory, layer_generators(config.exact_resume):
        if "quantize" in run.params:
            outcome = quantize.after_method(ctx, lambda: method.run(ctx, run.params), log)
            outcome = quantize.apply(ctx, outcome, run.params["quantize"])
        else:
            outcome = method.run(ctx, run.params)
    train_seconds = time.perf_counter() - started
    log(f"{label}: trained in {train_seconds:.0f}s; measuring and exporting")
    figures = measure(outcome, data, run_dir)
    if ctx.taught:  # the teacher's forward passes
        figures["train_flops"] += metrics.teacher_flops(metrics.count_macs(baseline()).dense,
                                                        data.train_examples, sum(ctx.taught))
    record = {
        **_identity(config, run, data),
        **figures,
        "train_seconds": round(train_seconds, 2),
        "peak_memory_mb": round(memory.mb, 1),
        "fingerprint": cache.fingerprint(config, run),
    }
    # latency is taken later, side by side with the other runs (_time_side_by_side)
    record = complete_run(record, {"latency_ms": "timed with every run at the end"})
    files.write_json(run_dir / "result.json", record)
    files.remove_folder(run_dir / quantize.METHOD_DONE)  # its result is written: nothing resumes it
    log(f"{label}: accuracy {record['accuracy']:.4f}, sparsity {record['sparsity']:.3f}, "
        f"TFLite {record['tflite_bytes'] / 1024:.0f} KiB")
    return record


def _identity(config: ExperimentConfig, run: RunSpec, data: Data) -> dict:
    """A run's method, name, tag and everything it trained with: the method's parameters
    (defaults filled in) and the optimizer, rate, schedule, batch size and, when set,
    clipping and teacher of its phase."""
    params = {**METHODS[run.method].defaults, **run.params}
    spec = getattr(config.budget.for_run(run.training), phase_of(run.method, params))
    training = {"optimizer": spec.optimizer, "learning_rate": spec.learning_rate,
                "schedule": spec.schedule,
                "batch_size": run.training.get("batch_size", data.batch_size)}
    if spec.optimizer != "adam":
        training["weight_decay"] = spec.weight_decay
    if spec.optimizer == "sgd":
        training["momentum"] = spec.momentum
    if spec.clipnorm:
        training["clipnorm"] = spec.clipnorm
    if spec.distill:
        training.update(distill=spec.distill, temperature=spec.temperature)
    return {"method": run.method, "run": run.run_id, **({"tag": run.tag} if run.tag else {}),
            "settings": {**params, **training}}


def measure(outcome: Outcome, data: Data, run_dir: Path) -> dict:
    """The figures every method is judged by, taken the same way for all of them."""
    model = outcome.model
    with files.atomic_path(run_dir / "model.keras") as tmp:
        model.save(tmp)
    quantized = bool(outcome.export)
    tflite = export.to_tflite(outcome.export_model or model, run_dir / "model.tflite", **outcome.export,
                              check_inputs=data.sample_inputs(256 if quantized else 32),
                              representative=_calibration(data) if quantized else None)
    scores = metrics.evaluate(model, data.test)
    stored = {}
    if quantized:  # the file is what ships: its own predictions are the scores
        stored = {"keras_accuracy": scores["accuracy"], "tflite_mode": tflite.mode,
                  "tflite_agreement": tflite.agreement,
                  "tflite_weights": [{"op": w.op, "weight": w.weight, "type": w.type, "bytes": w.bytes,
                                      "dequantized": w.dequantized} for w in tflite.weights()]}
        scores = file_scores(tflite.content, data.test, unit_threshold(model))
    figures = metrics.figures(model)
    return {
        **scores,
        **figures,
        "layer_sparsity": {k: round(v, 5) for k, v in metrics.layer_sparsity(model).items()},
        "keras_bytes": footprint.file_bytes(run_dir / "model.keras"),
        "tflite_bytes": tflite.bytes,
        "tflite_gzip_bytes": footprint.gzip_bytes(tflite.path),
        "tflite_max_abs_diff": tflite.max_abs_diff,
        **stored,
        "epochs": outcome.epochs,
        "train_step_ms": (outcome.history.get("step_ms") or [None])[0],
        "history": outcome.history,
        # a sparse-from-the-start method counts its own (outcome.extra)
        "train_flops": metrics.training_flops(figures["macs"], figures["macs_effective"], data.train_examples,
                                              outcome.history.get("sparsity", [])),
        **outcome.extra,
    }


def file_scores(content: bytes, dataset, threshold: float | None = None) -> dict[str, float]:
    """Accuracy and macro F1 of a ``.tflite`` on ``dataset``'s batches, run by LiteRT; a
    single output unit is cut at ``threshold`` (its model's
    :func:`~kerasprune.metrics.quality.unit_threshold`), else as the outputs suggest."""
    inputs, labels = arrays(dataset)
    outputs = export.run_tflite(content, inputs)
    predicted = predicted_classes(outputs.reshape(len(outputs), -1), threshold=threshold)
    return metrics.classification_scores(labels, predicted)


def _calibration(data: Data, n: int = 256):
    """Training examples for full-int8 calibration (the check compares on test inputs)."""
    return np.stack([x.numpy() for x, _ in data.train.unbatch().take(n)])


__all__ = ["file_scores", "measure", "results_paths", "run_experiment"]
