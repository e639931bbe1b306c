"""What a rerun keeps: each run's fingerprint and saved result, what a command does with
each run, and what a killed run left behind.

A run's result is reused only while its fingerprint (the config it depends on) is the
same and its files are there; a retrained baseline takes the runs fine-tuned from the old
one with it; a results file is never rewritten without a run it records.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from .. import __version__, files
from ..errors import ConfigError
from .registry import METHODS
from .spec import BASELINE, ExperimentConfig, RunSpec

Log = Callable[[str], None]


def actions(config: ExperimentConfig, root: Path, only: list[str] | None, fresh: bool) -> dict[str, str]:
    """What each run will do: ``keep`` its saved result, ``run``, or be left out of the
    results, as ``stale`` (its baseline is retrained) or ``skip`` (not selected, none saved)."""
    wanted = set(only) if only else None
    unknown = (wanted or set()) - {r.run_id for r in config.runs}
    if unknown:
        raise ConfigError(f"--only: no run(s) {', '.join(sorted(unknown))} in {config.path}; "
                          f"the runs are {', '.join(r.run_id for r in config.runs)}.")
    chosen, retrained = {}, False
    for run in config.runs:
        selected = wanted is None or run.run_id in wanted
        stale = retrained and METHODS[run.method].from_baseline
        if not stale and not (fresh and selected) and cached(root / run.run_id, fingerprint(config, run)):
            chosen[run.run_id] = "keep"
        elif selected or run.method == BASELINE:  # the baseline is every method's start
            chosen[run.run_id] = "run"
            retrained |= run.method == BASELINE
        else:
            chosen[run.run_id] = "stale" if stale else "skip"
    return chosen


def refuse_to_drop_results(actions: dict[str, str], json_path: Path, root: Path,
                           only: list[str] | None) -> None:
    """``--only`` writes the results file with the other runs' saved results; a run with
    none here (a fresh clone, or a baseline that will be retrained) would be left out of
    it, so a results file that records that run is not overwritten."""
    if not only or not json_path.is_file():
        return
    held = {r.get("run") for r in json.loads(json_path.read_text()).get("runs", [])}
    dropped = [run for run, action in actions.items() if action in ("stale", "skip") and run in held]
    if dropped:
        why = ("the baseline would be retrained" if "stale" in actions.values()
               else "their saved results are not")
        raise ConfigError(f"--only {' '.join(only)} would rewrite {json_path} without runs it records "
                          f"({', '.join(dropped)}): {why} under {root}.  Run the whole experiment, "
                          "add them to --only, or write elsewhere with --results-dir.")


#: settings added after results were saved, at the value that changes nothing: they count
#: only when set otherwise, so the saved results of the runs without them stay valid.
#: Method settings count unless at this value of this type (``gradient_batches: 1.0`` counts);
_LATER_SETTINGS = {"sparse_init": False, "gradient_batches": 1, "revise": False, "per_row": False,
                   "start_rankings": False}
#: phase settings are off at zero (int or float) and count when not zero
_LATER_PHASE_SETTINGS = ("clipnorm", "distill")


def fingerprint(config: ExperimentConfig, run: RunSpec) -> str:
    """What a run's result depends on; a cached result with another one is rerun.

    The baseline's training is part of every run; the ``finetune`` phase only of the
    methods that start from the baseline.
    """
    method = METHODS[run.method]
    budget = dataclasses.asdict(config.budget)
    budget.pop("name")
    for phase in ("train", "finetune"):
        budget[phase] = {k: v for k, v in budget[phase].items() if v or k not in _LATER_PHASE_SETTINGS}
        if "distill" not in budget[phase]:  # no teacher, no temperature
            del budget[phase]["temperature"]
    params = {k: v for k, v in {**method.defaults, **run.params}.items()
              if k not in _LATER_SETTINGS or (type(v), v) != (type(_LATER_SETTINGS[k]), _LATER_SETTINGS[k])}
    key = {"dataset": config.dataset, "seed": config.seed, "method": run.method,
           "params": params, "kerasprune": __version__}
    if run.training:  # only when set, so the runs without any keep their saved results
        key["training"] = run.training
    if method.revision > 1:  # likewise: the results of a method never revised stay valid
        key["revision"] = method.revision
    # another random stream for dropout (likewise only when set); also for a model without
    # random layers, which then retrains to the same figures: the fingerprint builds no model
    if config.exact_resume:
        key["exact_resume"] = True
    if method.from_baseline:
        key["baseline"] = fingerprint(config, RunSpec(BASELINE, {}, BASELINE))
    else:
        budget.pop("finetune")
    key["budget"] = budget
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cached(run_dir: Path, fingerprint: str) -> dict | None:
    path = run_dir / "result.json"
    if not path.is_file() or not all((run_dir / name).is_file() for name in ("model.keras", "model.tflite")):
        return None  # without its files the run cannot be timed with the others: it runs again
    record = json.loads(path.read_text())
    return record if record.get("fingerprint") == fingerprint else None


#: what a killed or finished run's training leaves in its folder for a resume to pick up:
#: its backup, history, best epoch and random state, all of those of its QAT phase, and the
#: method's model kept for that phase (:data:`.quantize.METHOD_DONE`)
_TRAINING_LEFTOVERS = ("backup", "history.csv", "best", "random_state.json", "qat", "method")


def _leftovers(run_dir: Path) -> list[Path]:
    return [run_dir / name for name in _TRAINING_LEFTOVERS if (run_dir / name).exists()]


def _drop(paths: list[Path]) -> None:
    for path in paths:
        files.remove_folder(path) if path.is_dir() else path.unlink(missing_ok=True)


def forget_other_config(run_dir: Path, fingerprint: str, log: Log, label: str) -> None:
    """Drop what a killed run's training left unless it was made with this config.

    A backup without a fingerprint beside it comes from an unknown config (an older
    kerasprune, a copied folder): restoring it could fail on changed shapes, or resume a
    different run silently.
    """
    marker = run_dir / "fingerprint"
    known = marker.read_text().strip() if marker.is_file() else None
    left = _leftovers(run_dir)
    if left and known != fingerprint:
        why = "the config changed since" if known else "no record of the config of"
        interrupted = (run_dir / "backup").exists() or (run_dir / "qat" / "backup").exists()
        which = "interrupted" if interrupted else "last"  # a finished run keeps its history
        log(f"{label}: {why} the {which} run; starting it afresh")
        _drop(left)
    files.write_text(marker, fingerprint + "\n")


def forget_runs_from(root: Path, config: ExperimentConfig, actions: dict[str, str]) -> None:
    """A baseline about to be retrained takes the saved results of the runs fine-tuned from
    it along, and what their killed training left, so that no later command keeps or
    resumes one made from the old baseline."""
    if actions.get(BASELINE) == "run":
        for run in config.runs:
            if METHODS[run.method].from_baseline:
                _drop([root / run.run_id / "result.json", *_leftovers(root / run.run_id)])


__all__ = ["actions", "cached", "fingerprint", "forget_other_config", "forget_runs_from",
           "refuse_to_drop_results"]
