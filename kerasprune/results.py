"""The results schema that experiments, studies and benchmarks all write.

Every results file has the same top-level fields and every run the same figures, so a
report or a reader never meets a hole.  A figure that cannot exist for a run (a latency
study has no accuracy: its models are untrained) stays ``null``, and ``not_measured``
says why, field by field.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from .errors import ConfigError

TOP_FIELDS = ("experiment", "description", "dataset", "model", "budget", "command",
              "environment", "runs")
RUN_FIELDS = ("method", "run", "accuracy", "f1", "sparsity", "params", "nonzero_params", "macs",
              "tflite_bytes", "tflite_gzip_bytes", "latency_ms", "train_seconds", "peak_memory_mb")


def _complete(record: dict, fields: tuple[str, ...], why: Mapping[str, str], where: str) -> dict:
    reasons = {**record.get("not_measured", {}), **why}  # a figure taken since drops its reason
    missing = [f for f in fields if record.get(f) is None]
    unexplained = [f for f in missing if f not in reasons]
    if unexplained:
        raise ValueError(f"results: {where} has no {', '.join(unexplained)} and no reason why")
    done = {**{f: record.get(f) for f in fields}, **record}
    done.pop("not_measured", None)
    if missing:
        done["not_measured"] = {f: reasons[f] for f in missing}
    return done


def complete_run(run: dict, why: Mapping[str, str] = {}) -> dict:
    """``run`` with every schema figure; a missing one must have its reason in ``why``."""
    return _complete(run, RUN_FIELDS, why, f"run {run.get('run')!r}")


def complete_results(results: dict, why: Mapping[str, str] = {}) -> dict:
    """``results`` with every top-level field; a missing one must have its reason."""
    return _complete(results, TOP_FIELDS, why, f"results {results.get('experiment')!r}")


def read_results(path: str | Path) -> dict:
    """A results file written by kerasprune, or a ConfigError that says what it is instead."""
    path = Path(path)
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read results file '{path}': {exc}") from None
    runs = results.get("runs") if isinstance(results, dict) else None
    if not isinstance(runs, list) or not all(isinstance(r, dict) and "run" in r and "method" in r
                                             for r in runs) or "experiment" not in results:
        raise ConfigError(f"'{path}' is not a kerasprune results file (it needs 'experiment' and "
                          "'runs' with a 'run' and 'method' each); give the JSON that "
                          "`kerasprune experiment` wrote, e.g. experiments/results/<name>.json.")
    return results
