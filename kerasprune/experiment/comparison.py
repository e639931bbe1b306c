"""Which run a result is compared with: tfmot's best run at the same sparsity, and a
tuned method's best run against it, each chosen on validation accuracy.  The report and
the seed summary both compare through here, so they always pick the same runs.
"""
from __future__ import annotations

from typing import Any

from .spec import BASELINE, PEER

#: what sizes a run, first found first: its sparsity, its share of dense MACs, its width ratio
_TARGETS = ("sparsity", "macs", "ratio")


def target(run: dict) -> tuple[str, Any] | None:
    """What ``run`` was sized to, as (setting, value); runs compete only at the same target.
    A per-layer ratio (a mapping) is one target, as its sorted items."""
    key = next((k for k in _TARGETS if run["settings"].get(k) is not None), None)
    if key is None:
        return None
    value = run["settings"][key]
    return key, tuple(sorted(value.items())) if isinstance(value, dict) else value


def target_label(run: dict) -> str:
    """A target as shown: ``0.9`` for a sparsity, ``macs 0.5`` otherwise, ``-`` without one."""
    at = target(run)
    if at is None:
        return "-"
    key, value = at
    shown = ", ".join(f"{k} {v}" for k, v in value) if isinstance(value, tuple) else value
    return str(shown) if key == "sparsity" else f"{key} {shown}"


def chosen_on(run: dict) -> float:
    """What a run is chosen by among its method's sweep: the validation accuracy of the
    epoch it ended on (never the reported split, which would flatter whichever is picked)."""
    history = run.get("history") or {}
    val = history.get("val_accuracy") or []
    kept = history.get("kept_epoch")
    if kept and len(val) >= int(kept[0]):
        return val[int(kept[0]) - 1]
    return val[-1] if val else float("-inf")


def best_runs(runs: list[dict], method: str) -> dict[tuple[str, Any] | None, dict]:
    """``method``'s best run at each :func:`target`: the highest :func:`chosen_on` (first wins ties)."""
    best: dict[tuple[str, Any] | None, dict] = {}
    for r in runs:
        at = target(r)
        if r["method"] == method and (at not in best or chosen_on(r) > chosen_on(best[at])):
            best[at] = r
    return best


def tried(runs: list[dict], run: dict, same_length: bool = False) -> int:
    """How many runs of ``run``'s method at its target its choice was made among (with
    ``same_length``, only those trained for as many epochs as ``run``)."""
    return sum(r["method"] == run["method"] and target(r) == target(run)
               and (not same_length or r.get("epochs") == run.get("epochs")) for r in runs)


def peer_pairs(runs: list[dict]) -> list[tuple[dict, dict]]:
    """Each kerasprune run with tfmot's best run at the same target sparsity, where there is one."""
    peers = best_runs(runs, PEER)
    return [(r, peers[target(r)]) for r in runs
            if r["method"] not in (BASELINE, PEER) and target(r) in peers]


def swept_bests(runs: list[dict], epochs: int | None) -> list[dict]:
    """Each kerasprune method's best run (chosen as in :func:`best_runs`) at each target
    where it tried several settings for ``epochs`` epochs (a run trained longer is another
    budget, not a setting)."""
    same = [r for r in runs if r["method"] not in (BASELINE, PEER) and r.get("epochs") == epochs]
    return [best for method in dict.fromkeys(r["method"] for r in same)
            for best in best_runs(same, method).values() if tried(same, best) > 1]


def best_pairs(runs: list[dict]) -> list[tuple[dict, dict]]:
    """Each method's :func:`swept_bests` at tfmot's best run's length against that run, so
    that tuning is compared with tuning (its runs one by one against tfmot's best give
    tfmot the only choice)."""
    return [(best, peer) for at, peer in best_runs(runs, PEER).items()
            for best in swept_bests(runs, peer.get("epochs")) if target(best) == at]


def dense_pairs(runs: list[dict]) -> list[tuple[dict, dict]]:
    """Each method's :func:`swept_bests` at the dense baseline's length against it: whether
    a tuned method reaches dense, its choice made without the reported split."""
    dense = next((r for r in runs if r["method"] == BASELINE), None)
    return [] if dense is None else [(best, dense) for best in swept_bests(runs, dense.get("epochs"))]
