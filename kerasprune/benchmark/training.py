"""Training-step time side by side: dense, tfmot's pruning wrapper, kerasprune's.

The three train the same model on the same batches with the experiment's optimizer, in
interleaved blocks of ``steps`` steps (order rotated each round), so a slow spell of a
shared machine hits all of them; ratios are medians of per-round ratios.  kerasprune
changes masks outside the train step (every ``frequency`` steps while a sparsity step
ramps in); that cost is timed on its own and reported per step as an upper bound.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np

from .. import models
from ..backend import keras
from ..callbacks import StepTimer
from ..data import load
from ..environment import environment
from ..experiment import training
from ..experiment.config import load_config
from ..pruning import prune, set_sparsity
from .timing import ratio, summarize


def _variants(model: keras.Model, sparsity: float, total_steps: int) -> dict[str, tuple]:
    import tensorflow_model_optimization as tfmot

    def copy() -> keras.Model:
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        return clone

    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, sparsity, 0, max(1, total_steps), frequency=100)
    gmp = tfmot.sparsity.keras.prune_low_magnitude(copy(), pruning_schedule=schedule)
    ours = prune(copy(), track_scores=True)
    set_sparsity(ours, sparsity, "magnitude")
    return {"dense": (copy(), []), "tfmot_gmp": (gmp, [tfmot.sparsity.keras.UpdatePruningStep()]),
            "adaptive": (ours, [])}


def train_step_benchmark(config_path: str | os.PathLike, *, budget: str = "cpu",
                         sparsity: float = 0.8, rounds: int = 5, steps: int = 40,
                         data_dir: str | os.PathLike | None = None, frequency: int = 100,
                         progress: Callable[[str], None] | None = print) -> dict:
    """Median training-step milliseconds of the three, and their ratios, for a config."""
    config = load_config(config_path, budget)
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
            timer = StepTimer(skip=1)
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
    return {
        "experiment": f"{config.name}_train_step", "dataset": config.dataset,
        "model": config.budget.model, "budget": budget, "sparsity": sparsity,
        "batch_size": config.budget.data.get("batch_size"), "rounds": rounds, "steps": steps,
        "environment": environment(),
        "step_ms": {n: s.as_dict() for n, s in stats.items()},
        "ratio_to_dense": {n: round(ratio(medians[n], medians["dense"]), 4) for n in names},
        "ratio_to_tfmot": {n: round(ratio(medians[n], medians["tfmot_gmp"]), 4) for n in names},
        "mask_update_ms": round(update_ms, 3),
        "mask_update_ms_per_step": round(update_ms / frequency, 4),
        "adaptive_ratio_to_tfmot_with_updates": round(
            ratio(medians["adaptive"], medians["tfmot_gmp"])
            + update_ms / frequency / stats["tfmot_gmp"].median_ms, 4),
    }


def markdown(result: dict) -> str:
    lines = [
        f"# {result['experiment']}", "",
        f"Training-step time of `{result['model']}` on `{result['dataset']}` (batch "
        f"{result['batch_size']}, sparsity {result['sparsity']}), {result['rounds']} interleaved rounds "
        f"of {result['steps']} steps after a warm-up round; ratios are medians of per-round ratios.", "",
        "| variant | median ms | p90 ms | CV | ratio to dense | ratio to tfmot |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in result["step_ms"].items():
        lines.append(f"| `{name}` | {s['median_ms']:.2f} | {s['p90_ms']:.2f} | {s['cv']:.1%} | "
                     f"{result['ratio_to_dense'][name]:.3f} | {result['ratio_to_tfmot'][name]:.3f} |")
    lines += ["", f"kerasprune's mask update (global Taylor ranking): {result['mask_update_ms']:.1f} ms, "
              f"{result['mask_update_ms_per_step']:.3f} ms per step at one update per 100 steps; with it "
              f"adaptive / tfmot = {result['adaptive_ratio_to_tfmot_with_updates']:.3f} (an upper bound: "
              "updates happen only while a sparsity step ramps in)."]
    return "\n".join(lines)
