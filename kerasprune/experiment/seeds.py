"""One experiment repeated over seeds: spread of each run, and paired differences.

A single seed cannot tell a 0.05-point win from noise.  ``kerasprune seeds`` reads the
results JSONs of one experiment run with different seeds (``kerasprune experiment
--seed N`` writes ``<name>.seed<N>.json``) and reports, per run, mean and spread of the
accuracy, and per seed the difference to the dense baseline and to tfmot at the same
sparsity (its best run there, chosen on validation accuracy within each seed): the paired
comparison, since a seed shares its baseline and data order, with the 95% interval of
its mean: a claim that two methods differ needs an interval that leaves out zero.  A
method that tried several settings is also compared by its own best run, chosen the same
way, with dense and with tfmot's best: tuning against tuning.
Like the report, it only reads results; nothing is measured here.
"""
from __future__ import annotations

import math
import re
import statistics
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError
from .comparison import best_pairs, dense_pairs, peer_pairs, target_label, tried
from .report import read_experiment_results
from .spec import BASELINE


def _load(paths: list[str | Path]) -> list[tuple[str, dict]]:
    loaded = []
    for path in map(Path, paths):
        loaded.append((path.stem, read_experiment_results(path)))
    names = [str(r.get("experiment")) for _, r in loaded]
    if len(set(names)) < len(names):
        raise ConfigError(f"the same seed is passed twice ({', '.join(names)}); pass one file per seed.")
    kinds = {(re.sub(r"\.seed\d+$", "", n), r.get("budget")) for n, (_, r) in zip(names, loaded)}
    if len(kinds) > 1:
        raise ConfigError("these results mix experiments or budgets "
                          f"({', '.join(sorted(f'{e}/{b}' for e, b in kinds))}); pass the "
                          "files of one experiment and budget, one per seed.")
    if len(loaded) < 2:
        raise ConfigError("pass at least two results files of the same experiment (one per seed).")
    return loaded


def _interval(values: list[float]) -> str:
    """The 95% t interval of the mean difference, in points ("-" from one seed)."""
    if len(values) < 2:
        return "-"
    from scipy.stats import t  # only this command needs it: not imported with the package

    mean = statistics.fmean(values)
    half = t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return f"[{100 * (mean - half):+.2f}, {100 * (mean + half):+.2f}]"


def _points(values: list[float]) -> str:
    """Differences in accuracy points: each seed, their mean and its 95% interval, and how
    many are >= 0."""
    each = " ".join(f"{100 * v:+.2f}" for v in values)
    return (f"{each} | {100 * statistics.fmean(values):+.2f} | {_interval(values)} | "
            f"{sum(v >= 0 for v in values)}/{len(values)}")


def _paired(by_run: dict[str, dict[str, dict]], run_id: str, partner_id: str) -> list[str]:
    """The row of ``run_id`` against ``partner_id`` in the seeds that ran both (none if none did)."""
    runs, partner = by_run[run_id], by_run[partner_id]
    diffs = [runs[n]["accuracy"] - partner[n]["accuracy"] for n in runs if n in partner]
    return [f"| `{run_id}` | `{partner_id}` | {_points(diffs)} |"] if diffs else []


def seed_summary(paths: list[str | Path], pairs: list[tuple[str, str]] = ()) -> str:
    """The Markdown summary of one experiment's results over seeds (files in the given order);
    ``pairs`` of run names add their own paired rows (say, a method against a heuristic)."""
    loaded = _load(paths)
    by_run: dict[str, dict[str, dict]] = {}
    for name, results in loaded:
        for run in results["runs"]:
            by_run.setdefault(run["run"], {})[name] = run
    experiment = re.sub(r"\.seed\d+$", "", str(loaded[0][1].get("experiment")))
    budget = loaded[0][1].get("budget")
    lines = [f"# {experiment} ({budget}) over {len(loaded)} seeds", "",
             "Files: " + ", ".join(f"`{name}`" for name, _ in loaded) + ".", "",
             "| run | seeds | mean accuracy | std | min | max |", "|---|---|---|---|---|---|"]
    for run_id, runs in by_run.items():
        acc = [r["accuracy"] for r in runs.values()]
        spread = f"{statistics.stdev(acc):.4f}" if len(acc) > 1 else "-"
        lines.append(f"| `{run_id}` | {len(acc)} | {statistics.fmean(acc):.4f} | {spread} | "
                     f"{min(acc):.4f} | {max(acc):.4f} |")
    unknown = sorted({r for pair in pairs for r in pair} - set(by_run))
    if unknown:
        raise ConfigError(f"--pair: no run(s) {', '.join(unknown)} in these results; the runs are "
                          f"{', '.join(by_run)}.")
    lines += ["", "## Paired, seed by seed (accuracy points)", "",
              ("A difference is taken only within a seed, where both runs share the baseline "
               "and the data order; `95%` is the t interval of the mean difference (where it spans "
               "zero, these seeds do not tell the two runs apart); `>= 0` counts the seeds where "
               "the run is not behind."), "",
              "| run | against | each seed | mean | 95% | >= 0 |", "|---|---|---|---|---|---|"]
    if BASELINE in by_run:
        lines += [row for run_id in by_run if run_id != BASELINE for row in _paired(by_run, run_id, BASELINE)]
    lines += [row for run_id, partner_id in pairs for row in _paired(by_run, run_id, partner_id)]
    lines += _against_chosen(loaded, dense_pairs, _best_label, chosen=True)
    lines += _against_chosen(loaded, peer_pairs, lambda r: f"`{r['run']}`", chosen=False)
    lines += _against_chosen(loaded, best_pairs, _best_label, chosen=True)
    return "\n".join(lines) + "\n"


def _best_label(run: dict) -> str:
    return f"`{run['method']}`'s best at {target_label(run)}"


def _against_chosen(loaded: list[tuple[str, dict]], pairs: Callable[[list[dict]], list[tuple[dict, dict]]],
                    label: Callable[[dict], str], chosen: bool) -> list[str]:
    """Seed-by-seed differences of the runs ``pairs`` picks in each seed to their partner
    there (dense, or tfmot's best run at the same sparsity), one row per ``label``. With
    ``chosen`` (ours were picked among several) a row names the runs picked over the seeds
    and, per seed, how many the choice was among; the same for tfmot's side."""
    rows: dict[str, dict] = {}
    for _, results in loaded:
        runs = results["runs"]
        for run, partner in pairs(runs):
            row = rows.setdefault(label(run), {"diffs": [], "ours": {}, "theirs": {}, "of": ([], []),
                                               "dense": partner["method"] == BASELINE})
            row["diffs"].append(run["accuracy"] - partner["accuracy"])
            row["ours"][run["run"]] = row["theirs"][partner["run"]] = None
            row["of"][0].append(str(tried(runs, run, same_length=chosen)))
            row["of"][1].append(str(tried(runs, partner)))
    lines = []
    for name, row in rows.items():
        ours = f" (of {'/'.join(row['of'][0])}): " + ", ".join(f"`{r}`" for r in row["ours"]) if chosen else ""
        theirs = ("`dense`" if row["dense"] else
                  f"tfmot's best (of {'/'.join(row['of'][1])}): " + ", ".join(f"`{r}`" for r in row["theirs"]))
        lines.append(f"| {name}{ours} | {theirs} | {_points(row['diffs'])} |")
    return lines
