"""The report section and timeline plot of a traffic scenario (:mod:`.traffic`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import files
from .spec import TRAFFIC_PHASES as PHASES


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def markdown(section: dict) -> list[str]:
    """The tables of the ``traffic`` section of a results file."""
    narrow = ", ".join(f"{k} {v}" for k, v in section["narrow"].items())
    dense = section["dense"]["scores"]
    bench = section["benchmark"]
    overhead = section["monitor_overhead"]
    lines = [
        "## Serving under changing traffic", "",
        f"Batches of {section['batch_size']} test examples: {section['phases']['all']} from all "
        f"traffic, {section['phases']['narrowed']} narrowed to {narrow}, then "
        f"{section['phases']['restored']} from all traffic again (the same seeded sequence for every "
        f"server).  Settled accuracy is on {section['eval_examples']} held examples of each kind of "
        f"traffic; the static baseline is structured pruning to the compacted widths, scored once by "
        f"`{section['static']}` on the narrowed traffic.", "",
        "| server | phase | served accuracy | served F1 | dense accuracy (same batches) | ms / batch (median) "
        "| CPU cores busy | params at end | active at end |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for server in section["servers"]:
        for phase in PHASES:
            p = server["phases"][phase]
            active = ", ".join(f"{k} {v}" for k, v in p["active_at_end"].items())
            lines.append(f"| `{server['tag']}` | {phase} | {p['served']['accuracy']:.4f} | "
                         f"{p['served']['f1']:.4f} | {p['dense']['accuracy']:.4f} | "
                         f"{p['ms_per_batch']:.2f} | {p['cpu_cores_busy']:.2f} | "
                         f"{p['params_at_end']:,} | {active} |")
    lines += ["", "| model | accuracy, narrowed | accuracy, all | params | MACs | per-sample "
              "latency ratio TF-CPU | per-sample latency ratio LiteRT | recovery after the shift |",
              "|---|---|---|---|---|---|---|---|"]

    def row(name, scores, figures, recovery="-"):
        t = bench.get(name, {})
        ratios = [f"{t[k]['ratio']:.3f} ({t[k]['median_ms']:.3f} ms)" if k in t and t[k]["ratio"]
                  else "-" for k in ("tf-cpu", "tflite@1")]
        return (f"| `{name}` | {scores['narrowed']['accuracy']:.4f} | {scores['all']['accuracy']:.4f} | "
                f"{figures['params']:,} | {figures['macs']:,} | {ratios[0]} | {ratios[1]} | {recovery} |")

    lines.append(row("dense", dense, section["dense"]))
    for server in section["servers"]:
        rec = server["recovery"]
        recovery = (f"{rec['batches']} batches (then {rec['accuracy']:.4f})" if rec["batches"] is not None
                    else rec["reason"])
        lines.append(row(f"compact-{server['tag']}", server["compact_scores"], server["compact"], recovery))
        lines.append(row(f"static-{server['tag']}", server["static_scores"], server["static"],
                         "never: fixed offline"))
    lines += ["", f"Latency ratios are to dense, batch 1, timed in one interleaved run per target by "
              f"kerasprune.benchmark; ms / batch is the median wall time of the phase's batches in the "
              f"serving loop (a batch that triggers a rebuild waits for it; the build times are "
              f"below).  On a probe batch the monitor's statistics cost {_pct(overhead['overhead'])}% "
              f"of dense inference at batch {overhead['batch']} ({overhead['monitored_ms']:.3f} against "
              f"{overhead['dense_ms']:.3f} ms); a server probes one batch in `probe_every`.", ""]
    for server in section["servers"]:
        settings = ", ".join(f"{k} {v}" for k, v in server["settings"].items() if k != "tag")
        every = server["probe_every"]
        lines.append(f"- `{server['tag']}`: {settings}; {server['swaps']} swaps "
                     f"(built in {server['build_ms'] or 0:.0f} ms each on average, off the batches' "
                     f"median), {server['events']} events; monitoring {_pct(overhead['overhead'] / every)}% of dense inference "
                     f"over all batches.")
    return lines + [""]


def _trailing(values: list[float], window: int) -> np.ndarray:
    """The mean of each ``window`` consecutive values, ending at each value from the window-th."""
    return np.convolve(values, np.ones(window) / window, "valid")


def plot(section: dict, folder: Path) -> Path:
    """Active units, batch time and accuracy per batch, one line per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    window = 10
    for server in section["servers"]:
        rows = server["timeline"]
        batch = [r["batch"] for r in rows]
        axes[0].plot(batch, [r["active"] for r in rows], label=server["tag"])
        axes[1].plot(batch, [r["ms"] for r in rows], lw=0.6, label=server["tag"])
        axes[2].plot(batch[window - 1:], _trailing([r["accuracy"] for r in rows], window),
                     label=server["tag"])
    rows = section["servers"][0]["timeline"]
    axes[2].plot([r["batch"] for r in rows][window - 1:],
                 _trailing([r["dense_accuracy"] for r in rows], window), color="black", ls="--",
                 label="dense")
    edges = np.cumsum([section["phases"][p] for p in PHASES])[:-1]
    for ax, label in zip(axes, ("active units (share)", "ms per batch", f"accuracy (mean of the last {window} batches)")):
        for edge in edges:
            ax.axvline(edge + 0.5, color="grey", ls=":")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    axes[0].legend()
    axes[2].set_xlabel("batch (phases: all | narrowed | all again)")
    target = folder / "traffic_timeline.png"
    with files.atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return target
