"""The inference-time pruner under load: 8 client threads while it prunes, reactivates and
swaps (CI sends 3,000 requests; `kerasprune serving-load` sends 10^5)."""
from __future__ import annotations

import json


from kerasprune.benchmark.load import scenario, serve_under_load
from kerasprune.cli import main
from kerasprune.inference import AdaptiveInference
from kerasprune.studies.serving_load import SERVER


def test_every_answer_under_load_comes_from_one_complete_model_and_memory_stays_flat():
    model, phases = scenario()
    with AdaptiveInference(model, **SERVER) as server:
        report = serve_under_load(server, phases, requests=3000, threads=8, phase_every=250)
    assert report.errors == [] and report.mismatches == 0, report.errors[:3]
    assert report.prunes >= 2 and report.reactivations >= 2 and report.versions >= 4  # it moved
    assert report.rss_growth_mb < 32, report.as_dict()  # measured: +4 MiB over 62 swaps
    assert 0 < report.latency_ms["p50"] <= report.latency_ms["p99"] <= report.latency_ms["max"]


def test_an_answer_from_the_wrong_model_is_counted(monkeypatch):
    """The check can fail: a server that answers with another model's outputs is caught."""
    model, phases = scenario(width=16)
    with AdaptiveInference(model, **SERVER) as server:
        serve = server.serve

        def wrong(x):
            answer = serve(x)
            return type(answer)(answer.outputs + 0.01, answer.version, answer.removed)

        monkeypatch.setattr(server, "serve", wrong)
        report = serve_under_load(server, phases, requests=40, threads=2, phase_every=10)
    assert report.mismatches == 40 and not report.ok


def test_a_check_or_a_request_that_raises_fails_the_run(monkeypatch):
    model, phases = scenario(width=16)
    with AdaptiveInference(model, **SERVER) as server:
        serve = server.serve

        def flat(x):  # an answer of the wrong shape: its check raises
            answer = serve(x)
            return type(answer)(answer.outputs.ravel(), answer.version, answer.removed)

        monkeypatch.setattr(server, "serve", flat)
        report = serve_under_load(server, phases, requests=30, threads=2, phase_every=10)
    assert len(report.errors) == 30 and report.checked == 0 and not report.ok
    assert "outputs of shape (80,), expected (8, 10)" in report.errors[0]


def test_the_benchmark_command_writes_its_report(tmp_path):
    assert main(["serving-load", "--requests", "400", "--threads", "4", "--results-dir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "serving_load.json").read_text())
    assert result["ok"] and result["requests"] == 400 and "p99" in result["latency_ms"]
    assert "every answer matched" in (tmp_path / "serving_load.md").read_text()
