"""Which run a result is compared with: tfmot's best run at the same sparsity, and a
tuned method's best run against it, each chosen on validation accuracy.  The report and
the seed summary both compare through here, so they always pick the same runs.
"""
from __future__ import annotations

from .spec import BASELINE, PEER


def chosen_on(run: dict) -> float:
    """What a run is chosen by among its method's sweep: the validation accuracy of the
    epoch it ended on (never the reported split, which would flatter whichever is picked)."""
    history = run.get("history") or {}
    val = history.get("val_accuracy") or []
    kept = history.get("kept_epoch")
    if kept and len(val) >= int(kept[0]):
        return val[int(kept[0]) - 1]
    return val[-1] if val else float("-inf")


def best_runs(runs: list[dict], method: str) -> dict[float, dict]:
    """``method``'s best run at each target sparsity: the highest :func:`chosen_on` (first wins ties)."""
    best: dict[float, dict] = {}
    for r in runs:
        target = r["settings"].get("sparsity")
        if r["method"] == method and (target not in best or chosen_on(r) > chosen_on(best[target])):
            best[target] = r
    return best


def tried(runs: list[dict], run: dict, same_length: bool = False) -> int:
    """How many runs of ``run``'s method at its sparsity its choice was made among (with
    ``same_length``, only those trained for as many epochs as ``run``)."""
    return sum(r["method"] == run["method"] and r["settings"].get("sparsity") == run["settings"].get("sparsity")
               and (not same_length or r.get("epochs") == run.get("epochs")) for r in runs)


def peer_pairs(runs: list[dict]) -> list[tuple[dict, dict]]:
    """Each kerasprune run with tfmot's best run at the same target sparsity, where there is one."""
    peers = best_runs(runs, PEER)
    return [(r, peers[r["settings"].get("sparsity")]) for r in runs
            if r["method"] not in (BASELINE, PEER) and r["settings"].get("sparsity") in peers]


def swept_bests(runs: list[dict], epochs: int | None) -> list[dict]:
    """Each kerasprune method's best run (chosen as in :func:`best_runs`) at each sparsity
    where it tried several settings for ``epochs`` epochs (a run trained longer is another
    budget, not a setting)."""
    same = [r for r in runs if r["method"] not in (BASELINE, PEER) and r.get("epochs") == epochs]
    return [best for method in dict.fromkeys(r["method"] for r in same)
            for best in best_runs(same, method).values() if tried(same, best) > 1]


def best_pairs(runs: list[dict]) -> list[tuple[dict, dict]]:
    """Each method's :func:`swept_bests` at tfmot's best run's length against that run, so
    that tuning is compared with tuning (its runs one by one against tfmot's best give
    tfmot the only choice)."""
    return [(best, peer) for target, peer in best_runs(runs, PEER).items()
            for best in swept_bests(runs, peer.get("epochs")) if best["settings"].get("sparsity") == target]


def dense_pairs(runs: list[dict]) -> list[tuple[dict, dict]]:
    """Each method's :func:`swept_bests` at the dense baseline's length against it: whether
    a tuned method reaches dense, its choice made without the reported split."""
    dense = next((r for r in runs if r["method"] == BASELINE), None)
    return [] if dense is None else [(best, dense) for best in swept_bests(runs, dense.get("epochs"))]
