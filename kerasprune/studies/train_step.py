"""Training-step time side by side: dense, tfmot's pruning wrapper, kerasprune's.

All variants train the same model on the same batches with the experiment's optimizer,
in interleaved blocks of ``steps`` steps (order rotated each round), so a slow spell of a
shared machine hits all of them; ratios are medians of per-round ratios.  A step is
timed from one batch's begin to the next's, callbacks included.  kerasprune
changes masks outside the train step (every ``frequency`` steps while a sparsity step
ramps in); that cost is timed on its own and reported per step as an upper bound.

Dynamic sparse training adds three: ``static`` (a fixed random mask, the reference),
``rigl`` between updates (its wrappers can capture dense gradients, which costs a flag
read) and ``rigl_update``, where every step is an update step (gradient captured, masks
moved), which prices an update.
"""
from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow_model_optimization as tfmot

from .. import export, metrics, models
from ..backend import keras
from ..benchmark import footprint
from ..benchmark.timing import ratio, summarize
from ..data import load
from ..environment import environment
from ..experiment import training
from ..experiment.config import load_config
from ..experiment.progress import StepTimer
from ..experiment.registry import METHODS
from ..experiment.spec import ExperimentConfig
from ..results import complete_results, complete_run
from ..sparsity.dynamic import DynamicSparsity, DynamicState
from ..sparsity.prune import prune, set_sparsity, strip
from ..sparsity.state import read_state, write_state

NOT_MEASURED = {
    "latency_ms": "a training-step benchmark times training steps; inference latency of the "
                  "fully trained models is in the experiment's results",
    "peak_memory_mb": "the variants train in one process, so their peaks cannot be told apart",
}


def _variants(model: keras.Model, sparsity: float, total_steps: int) -> dict[str, tuple]:
    def copy() -> keras.Model:
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        return clone

    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, sparsity, 0, max(1, total_steps), frequency=100)
    gmp = tfmot.sparsity.keras.prune_low_magnitude(copy(), pruning_schedule=schedule)
    ours = prune(copy(), track_scores=True)
    set_sparsity(ours, sparsity, "magnitude")

    def dynamic(method: str, **settings) -> tuple[keras.Model, list]:
        model = prune(copy(), track_scores=False, track_gradients=method == "rigl")
        return model, [_FromStepZero(), DynamicSparsity(sparsity, method=method, verbose=0, **settings)]

    return {"dense": (copy(), []), "tfmot_gmp": (gmp, [tfmot.sparsity.keras.UpdatePruningStep()]),
            "adaptive": (ours, []), "static": dynamic("static"),
            "rigl": dynamic("rigl", update_every=10 ** 9),
            "rigl_update": dynamic("rigl", update_every=1, end_fraction=1.0)}


class _FromStepZero(keras.callbacks.Callback):
    """Each timed block restarts DynamicSparsity's count (its masks stay): one block's
    steps, not the whole benchmark's, are the run its updates are placed in."""

    def on_train_begin(self, logs=None) -> None:
        if read_state(self.model, "dynamic", DynamicState) is not None:
            write_state(self.model, "dynamic", DynamicState())


def train_step_benchmark(config_path: str | os.PathLike, *, budget: str = "cpu",
                         sparsity: float = 0.8, rounds: int = 5, steps: int = 40,
                         data_dir: str | os.PathLike | None = None, frequency: int | None = None,
                         progress: Callable[[str], None] | None = print,
                         command: str | None = None) -> dict:
    """Median training-step milliseconds of every variant, and their ratios, for a config.

    ``frequency`` (batches between mask updates while a step ramps in) defaults to what
    the config's ``adaptive`` runs use.
    """
    config = load_config(config_path, budget)
    if frequency is None:
        frequency = _adaptive_frequency(config)
    data = load(config.dataset, data_dir=data_dir, seed=config.seed, **config.budget.data)
    keras.utils.set_random_seed(config.seed)
    base = models.build_for(data, config.budget.model, **config.budget.model_args)
    variants = _variants(base, sparsity, rounds * steps)
    batches = data.train.repeat()
    spec = config.budget.finetune
    for model, _ in variants.values():
        training.compile_for(model, spec, training.steps_per_epoch(data))
    samples: dict[str, list[np.ndarray]] = {n: [] for n in variants}
    names = list(variants)
    for r in range(-1, rounds):  # round -1 traces and warms up, and is not kept
        for name in names[r % len(names):] + names[:r % len(names)]:
            model, callbacks = variants[name]
            timer = StepTimer(skip=1, cycle=True)  # batch begin to begin: mask updates included
            model.fit(batches, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer, *callbacks])
            if r >= 0:
                samples[name].append(np.array(timer.times_ms))
        if progress and r >= 0:
            progress(f"bench-train: round {r + 1}/{rounds}")
    stats = {n: summarize(s) for n, s in samples.items()}
    medians = {n: [float(np.median(s)) for s in samples[n]] for n in names}
    ours = variants["adaptive"][0]
    updates = []
    for _ in range(5):
        start = time.perf_counter()
        set_sparsity(ours, sparsity, "taylor")
        updates.append((time.perf_counter() - start) * 1000.0)
    update_ms = float(np.median(updates))
    plain = {"dense": variants["dense"][0],
             "tfmot_gmp": tfmot.sparsity.keras.strip_pruning(variants["tfmot_gmp"][0]),
             **{n: strip(variants[n][0]) for n in names if n not in ("dense", "tfmot_gmp")}}
    runs = [complete_run({
        "method": n, "run": n, "step_ms": stats[n].as_dict(),
        **_outcome(plain[n], data),
        "ratio_to_dense": round(ratio(medians[n], medians["dense"]), 4),
        "ratio_to_tfmot": round(ratio(medians[n], medians["tfmot_gmp"]), 4),
        "ratio_to_static": round(ratio(medians[n], medians["static"]), 4),
        "train_seconds": round(float(np.sum(np.concatenate(samples[n]))) / 1000.0, 3),
        **metrics.figures(plain[n]),
    }, NOT_MEASURED) for n in names]
    return complete_results({
        "experiment": f"{config.name}_train_step",
        "description": f"Training-step time of dense, tfmot, kerasprune's adaptive pruning and "
                       f"dynamic sparse training on {config.dataset} "
                       f"{config.budget.model}, interleaved.",
        "dataset": config.dataset, "model": config.budget.model, "budget": budget,
        "command": command, "environment": environment(), "sparsity": sparsity,
        "batch_size": config.budget.data.get("batch_size"), "rounds": rounds, "steps": steps,
        "runs": runs,
        "mask_update_ms": round(update_ms, 3),
        "mask_update_frequency": frequency,
        "mask_update_ms_per_step": round(update_ms / frequency, 4),
        "adaptive_ratio_to_tfmot_with_updates": round(
            ratio(medians["adaptive"], medians["tfmot_gmp"])
            + update_ms / frequency / stats["tfmot_gmp"].median_ms, 4),
    }, {"command": "called from Python, not from the command line"})


def _outcome(model: keras.Model, data) -> dict:
    """Test accuracy after the timed steps (all of them learn, or the timing means little)
    and the size of the model as exported."""
    with tempfile.TemporaryDirectory() as tmp:
        exported = export.to_tflite(model, Path(tmp) / "model.tflite")
        gzipped = footprint.gzip_bytes(exported.path)
    return {**metrics.evaluate(model, data.test), "tflite_bytes": exported.bytes,
            "tflite_gzip_bytes": gzipped}


def _adaptive_frequency(config: ExperimentConfig) -> int:
    adaptive = [run.params for run in config.runs if run.method == "adaptive"]
    default = METHODS["adaptive"].defaults["frequency"]
    return int(adaptive[0].get("frequency", default)) if adaptive else int(default)


def _shown(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def markdown(result: dict) -> str:
    lines = [
        f"# {result['experiment']}", "",
        *([f"- reproduce: `{result['command']}`", ""] if result.get("command") else []),
        f"Training-step time of `{result['model']}` on `{result['dataset']}` (batch "
        f"{result['batch_size']}, sparsity {result['sparsity']}), {result['rounds']} interleaved rounds "
        f"of {result['steps']} steps after a warm-up round; ratios are medians of per-round ratios.", "",
        "| variant | median ms | p90 ms | CV | ratio to dense | ratio to tfmot | ratio to static | accuracy after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in result["runs"]:
        s = run["step_ms"]
        to_static = f"{run['ratio_to_static']:.3f}" if run.get("ratio_to_static") else "—"
        lines.append(f"| `{run['run']}` | {s['median_ms']:.2f} | {s['p90_ms']:.2f} | {s['cv']:.1%} | "
                     f"{run['ratio_to_dense']:.3f} | {run['ratio_to_tfmot']:.3f} | {to_static} | "
                     f"{_shown(run.get('accuracy'))} |")
    lines += ["", "Accuracy after: test accuracy once the timed steps are done, all from the "
              "same start (a check that every variant trains, not a result). `rigl` is RigL "
              "between its updates; in `rigl_update` every step is an update step.",
              "", f"kerasprune's mask update (global Taylor ranking): {result['mask_update_ms']:.1f} ms, "
              f"{result['mask_update_ms_per_step']:.3f} ms per step at one update per "
              f"{result.get('mask_update_frequency', 100)} steps; with it "
              f"adaptive / tfmot = {result['adaptive_ratio_to_tfmot_with_updates']:.3f} (an upper bound: "
              "updates happen only while a sparsity step ramps in)."]
    return "\n".join(lines)
