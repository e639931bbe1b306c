"""``kerasprune tune CONFIG``: an experiment config with a ``tune`` block, searched.

The config's methods run first through the experiment runner (the dense baseline every
trial starts from, and the peers plotted beside the search: tfmot's GMP + int8 in the
example configs), then :class:`CompressionTuner` searches from the baseline.  The search
chooses on the validation split; the Pareto trials' files are then scored on the
reported split, as the peers are, and written to ``<name>.tune.json`` and ``.tune.md``
with the plot.

In keras-tuner's distributed mode (:mod:`.distributed`) the same command runs on every
process: the chief runs the methods, serves the oracle and writes the report; a worker
waits for the chief, then runs trials from the baseline the chief trained.  They share
``--out`` (one machine, or a shared file system).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Callable

from .. import checks, files, loading
from ..checks import number
from ..data import load
from ..errors import ConfigError
from ..experiment.config import load_config
from ..experiment.runner import file_scores, results_paths, run_experiment
from ..experiment.spec import BASELINE
from . import distributed
from .report import write_report
from .search import SEARCHES, CompressionTuner
from .space import compression_space

_KEYS = {"search", "max_trials", "size", "max_bytes", "max_latency_ms", "space", "min_agreement"}
_SPACE_KEYS = {"ratio", "sparsity", "precisions", "eight_bit_fraction"}


def _has_room(hp) -> bool:
    """A Float with two grid points (or continuous, with a range), or a Choice of several."""
    if not hasattr(hp, "min_value"):
        return len(hp.values) > 1
    return hp.max_value - hp.min_value >= hp.step if hp.step else hp.max_value > hp.min_value


def check(block: Any, where: str) -> dict[str, Any]:
    """The ``tune`` block with its defaults, or a ConfigError naming the key."""
    where = f"{where}: tune"
    checks.block(block, where, _KEYS, "{search: bayesian, max_trials: 12}")
    spec = {"search": "random", "max_trials": 10, "size": "raw", "space": {}, "min_agreement": 0.95,
            **block}
    number(spec["min_agreement"], f"{where}: min_agreement", low=0.0, high=1.0)
    if spec["search"] not in SEARCHES:
        raise ConfigError(f"{where}: search must be one of {', '.join(SEARCHES)}, got {spec['search']!r}.")
    if spec["size"] not in ("raw", "gzip"):
        raise ConfigError(f"{where}: size must be raw or gzip, got {spec['size']!r}.")
    number(spec["max_trials"], f"{where}: max_trials", low=1, integer=True)
    for key in ("max_bytes", "max_latency_ms"):
        if spec.get(key) is not None:
            number(spec[key], f"{where}: {key}", low=0, low_open=True)
    space = spec["space"]
    if not isinstance(space, dict) or set(space) - _SPACE_KEYS:
        raise ConfigError(f"{where}: space takes {', '.join(sorted(_SPACE_KEYS))}, got {space!r}.")
    import keras_tuner as kt  # the space's own checks, on a scratch set of hyperparameters

    scratch = kt.HyperParameters()
    try:
        compression_space(scratch, **space)
    except ConfigError as exc:
        raise ConfigError(f"{where}: space: {exc}") from None
    if not any(_has_room(h) for h in scratch.space):
        raise ConfigError(f"{where}: space has a single point ({space or 'defaults'}), so every trial "
                          "would train the same model; widen a range (ratio: [0, 0.5]) or add a "
                          "precision, or run that point as a method.")
    return spec


def run_tune(config_path: str | os.PathLike, *, budget: str = "cpu",
             data_dir: str | os.PathLike | None = None, out_dir: str | os.PathLike = "saved_models",
             results_dir: str | os.PathLike | None = None, log: Callable[[str], None] = print,
             command: str | None = None, chief_timeout: float = 6 * 3600,
             download: bool = False) -> dict:
    """Run the config's methods, search its ``tune`` block, write ``<name>.tune.json/.md``.

    A distributed worker returns ``{"worker": its id, "trials": the trials it ran}``
    instead, after waiting up to ``chief_timeout`` seconds for its chief.
    """
    config = load_config(config_path, budget)
    if "tune" not in config.raw:
        raise ConfigError(f"{config.path}: no 'tune' block; `kerasprune experiment` runs it instead.")
    spec = check(config.raw["tune"], str(config.path))
    part = distributed.role()
    if part == "worker":  # the chief serves its oracle once the baseline is trained
        distributed.wait_for_chief(chief_timeout, log)
    else:
        results = run_experiment(config_path, budget=budget, data_dir=data_dir, out_dir=out_dir,
                                 results_dir=results_dir, log=log, command=command, download=download)
    root = Path(out_dir) / config.name / budget
    data = load(config.dataset, data_dir=data_dir, seed=config.seed, download=download, **config.budget.data)
    model = loading.load_model(root / BASELINE / "model.keras")
    tuner = CompressionTuner(
        model, data, finetune=config.budget.finetune, search=spec["search"],
        max_trials=int(spec["max_trials"]), space=functools.partial(compression_space, **spec["space"]),
        max_bytes=spec.get("max_bytes"), max_latency_ms=spec.get("max_latency_ms"), size=spec["size"],
        min_agreement=spec["min_agreement"], seed=config.seed, directory=root, project_name="tune")
    where = ("" if part is None else f" (worker {tuner.tuner_id})" if part == "worker" else
             f" (chief: serving the oracle at {distributed.address()}; the workers run the trials)")
    log(f"tune: {spec['search']} search, {spec['max_trials']} trials -> {root / 'tune'}{where}")
    if part == "worker":
        distributed.search_as_worker(tuner, log)
        log(f"kerasprune: tune worker {tuner.tuner_id} finished after trials {', '.join(tuner.ran) or 'none'}; "
            "the chief writes the report")
        return {"worker": tuner.tuner_id, "trials": tuner.ran}
    tuner.search()
    trials = tuner.trials()
    front = {t["trial"] for t in tuner.pareto()}
    for trial in trials:
        trial["pareto"] = trial["trial"] in front
        if trial["pareto"]:  # the reported split, as the peers' figures are
            content = Path(tuner.get_trial_dir(trial["trial"]), "model.tflite").read_bytes()
            trial.update({f"test_{k}": v for k, v in file_scores(content, data.test).items()})
    json_path, _ = results_paths(config, results_dir)
    failed = [{"trial": t.trial_id, "hyperparameters": dict(t.hyperparameters.values),
               "reason": (t.message or "").strip().splitlines()[-1:] or ["unknown"]}
              for t in tuner.oracle.trials.values() if t.status in ("FAILED", "INVALID")]
    # the experiment's results (schema, runs) with the search added
    section = {**results, "command": command or f"kerasprune tune {config.path}", "search": spec,
               "trials": trials, "failed_trials": failed}
    out = json_path.with_suffix(".tune.json")
    files.write_json(out, section)
    report = write_report(section, out)
    log(f"kerasprune: tune finished; {out}, {report}")
    return section


__all__ = ["check", "run_tune"]
