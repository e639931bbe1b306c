"""The results schema: every field present, a missing figure only with its reason."""
from __future__ import annotations

import pytest

from kerasprune.results import RUN_FIELDS, TOP_FIELDS, complete_results, complete_run


def test_a_run_gets_every_field_and_a_missing_one_its_reason():
    run = complete_run({"method": "m", "run": "r", "params": 3},
                       {f: "why" for f in RUN_FIELDS if f not in ("method", "run", "params")})
    assert all(f in run for f in RUN_FIELDS) and run["accuracy"] is None
    assert run["not_measured"]["accuracy"] == "why" and "params" not in run["not_measured"]


def test_a_missing_figure_without_a_reason_is_refused():
    with pytest.raises(ValueError, match="run 'r' has no accuracy"):
        complete_run({f: 1 for f in RUN_FIELDS if f != "accuracy"} | {"run": "r"})
    with pytest.raises(ValueError, match="has no dataset"):
        complete_results({f: 1 for f in TOP_FIELDS if f != "dataset"})


def test_a_figure_taken_later_drops_its_reason():
    first = complete_run({f: 1 for f in RUN_FIELDS if f != "latency_ms"}, {"latency_ms": "later"})
    assert first["not_measured"] == {"latency_ms": "later"}
    assert "not_measured" not in complete_run({**first, "latency_ms": 0.5})


def test_every_committed_results_file_follows_the_schema():
    import json
    from pathlib import Path

    files = sorted((Path(__file__).parent.parent / "experiments" / "results").glob("*.json"))
    assert files
    for path in files:
        results = json.loads(path.read_text())
        for field in TOP_FIELDS:
            assert field in results, f"{path.name}: no {field}"
            assert results[field] is not None or field in results.get("not_measured", {}), \
                f"{path.name}: {field} is null without a reason"
        for run in results["runs"]:
            for field in RUN_FIELDS:
                assert field in run, f"{path.name}: run {run.get('run')} has no {field}"
                assert run[field] is not None or field in run.get("not_measured", {}), \
                    f"{path.name}: run {run.get('run')}: {field} is null without a reason"
