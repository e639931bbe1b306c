"""The inference-time pruner serving under load: the benchmark form of the CI load test.

:func:`kerasprune.benchmark.load.serve_under_load` on its built-in scenario (a 256-unit
layer the traffic switches half off and on again), with the count the CI test cuts short:
by default 10^5 requests from 8 threads.  The report gives the checks (errors, answers that
differ from their model's reference), the prunes, reactivations and swaps, per-request
latency and resident memory after warm-up and at the end.
"""
from __future__ import annotations

from pathlib import Path

from .. import files
from ..benchmark.load import scenario, serve_under_load
from ..environment import environment
from ..inference import AdaptiveInference
from ..results import complete_results

#: the server's settings: decisions often enough that 10^5 requests see hundreds of swaps
SERVER = {"probe_every": 4, "decide_every": 2, "warmup": 2, "decay": 0.5, "background": True}
NO_DATA = "synthetic traffic (benchmark.load.scenario's two phases): a load test needs no labelled data"


def run_load_study(results_dir: str | Path, *, requests: int = 100_000, threads: int = 8,
                   phase_every: int = 300, command: str = "", progress=print) -> dict:
    model, phases = scenario()
    with AdaptiveInference(model, **SERVER) as server:
        report = serve_under_load(server, phases, requests=requests, threads=threads,
                                  phase_every=phase_every, progress=progress)
    result = complete_results({
        "experiment": "serving_load", "model": model.name, "budget": "cpu", "command": command,
        "description": "AdaptiveInference under concurrent requests while it prunes, reactivates "
                       "and swaps; every answer checked against its model's reference",
        "environment": environment(), "runs": [], "server": SERVER, "phase_every": phase_every,
        **report.as_dict()}, {"dataset": NO_DATA})
    out = Path(results_dir) / "serving_load.json"
    files.write_json(out, result)
    files.write_text(out.with_suffix(".md"), markdown(result))
    return result


def markdown(r: dict) -> str:
    verdict = "every answer matched its model's reference" if r["ok"] else \
        f"**failed**: {len(r['errors'])} errors, {r['mismatches']} mismatched answers"
    rows = [("requests / threads", f"{r['requests']:,} / {r['threads']}"),
            ("seconds", f"{r['seconds']:.1f}"), ("checks", verdict),
            ("largest difference from the reference", f"{r['largest_difference']:.3g}"),
            ("prunes / reactivations / swaps", f"{r['prunes']} / {r['reactivations']} / {r['swaps']}"),
            ("serving models that answered", str(r["versions"])),
            ("latency p50 / p99 / max (ms)", " / ".join(f"{r['latency_ms'][q]:.2f}" for q in ("p50", "p99", "max"))),
            ("resident memory after warm-up / at the end (MiB)",
             f"{r['rss_after_warmup_mb']:.1f} / {r['rss_end_mb']:.1f} ({r['rss_growth_mb']:+.1f})")]
    lines = ["# Serving under load", "", f"`{r['command']}`", "",
             "A 256-unit layer whose traffic switches half of its units off and on again every "
             f"{r['phase_every']} requests, served by AdaptiveInference ({r['server']}) to "
             f"{r['threads']} client threads; each answer is compared with the never-modified model "
             "masked to the channels removed in the model that answered.", "",
             "| | |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows), ""]
    return "\n".join(lines)
