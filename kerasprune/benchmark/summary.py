"""A bench result as Markdown tables and a plot of latency ratios, written atomically."""
from __future__ import annotations

import os
from pathlib import Path

from .. import files
from ..errors import ConfigError


def markdown(result: dict) -> str:
    bench, models = result["benchmark"], result["runs"]
    base = bench["baseline"]
    lines = [
        f"# {result['experiment']}", "",
        *([f"- reproduce: `{result['command']}`", ""] if result.get("command") else []),
        f"Baseline `{base}`; targets {', '.join(f'`{t}`' for t in bench['targets'])}; "
        f"{bench['rounds']} interleaved rounds of at least {bench['min_block_seconds']} s per "
        "model (order rotated each round); a ratio is the median of the per-round ratios to "
        "the baseline (below 1: faster).  CV: standard deviation / mean of the block medians "
        "(robust CV: 1.4826 MAD / median of the same, which one disturbed block does not move); "
        "a round in which a block median strays more than 4 robust deviations and 5% from its "
        "model's median was disturbed by the host and is run again (counted in the table).",
        f"Machine: {result['environment'].get('cpu', '?')}; measured power: {bench['power']}; "
        f"CPU steal (time the host gave to other machines) during the run: "
        f"{_fmt_share(bench.get('cpu_steal_fraction'))}.", "",
        "## Models", "",
        "| model | kind | bytes | gzip bytes | TFLite bytes | params | nonzero | MACs | "
        "effective MACs | est. energy µJ |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in models:  # a model without a TFLite conversion has no graph figures: "–"
        figures = [m["bytes"], m["gzip_bytes"], m["tflite_bytes"], m["params"], m["nonzero_params"],
                   m["macs"], m["macs_effective"], (m["energy"] or {}).get("estimated_uj")]
        lines.append(f"| `{m['name']}` | {m['kind']} | "
                     + " | ".join("–" if f is None else str(f) for f in figures) + " |")
    lines += ["", f"Estimated energy: {bench['energy_table']}; see kerasprune.benchmark.energy.", ""]
    for target in bench["targets"]:
        rows = [r for r in result["results"] if r["target"] == target]
        reasons = {r.get("unavailable") for r in rows}
        if len(reasons) == 1 and None not in reasons:
            lines += [f"## `{target}`", "", f"Unavailable: {reasons.pop().rstrip('.')}.", ""]
            continue
        lines += [f"## `{target}`", "",
                  "| model | batch | median ms | p90 ms | p99 ms | CV (robust) | ratio to baseline | "
                  "per second | peak MiB | measured µJ |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if r.get("unavailable"):
                lines.append(f"| `{r['model']}` | {r['batch']} | unavailable: {r['unavailable']} "
                             "| | | | | | | |")
                continue
            lat = r["latency"]
            lines.append(
                f"| `{r['model']}` | {r['batch']} | {lat['median_ms']:.4f} | {lat['p90_ms']:.4f} | "
                f"{lat['p99_ms']:.4f} | {lat['cv']:.1%} ({lat.get('cv_robust', float('nan')):.1%})"
                f"{_reruns(lat)} | {_fmt(r.get('ratio'))} | "
                f"{lat['throughput_per_s']:.0f} | {r['peak_memory_mb']} | {_fmt(r.get('measured_uj'))} |")
        lines.append("")
        runtimes = {r["model"]: r["runtime"] for r in rows if r.get("runtime")}
        if runtimes:
            lines += ["Runtime: " + "; ".join(f"`{m}` {how}" for m, how in runtimes.items()) + ".", ""]
    return "\n".join(lines)


def _reruns(lat: dict) -> str:
    n = lat.get("rerun_rounds", 0)
    return f", {n} round{'s' if n > 1 else ''} rerun" if n else ""


def _fmt_share(value) -> str:
    return "not exposed" if value is None else f"{value:.1%}"


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def plot(result: dict, path: str | os.PathLike) -> Path:
    """Grouped bars: each model's batch-1 latency ratio to the baseline, per target."""
    import matplotlib  # here, not at the top: a second of import for every bench without --json

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = result["benchmark"]["targets"]
    names = [m["name"] for m in result["runs"]]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(names) * max(1, len(targets)) / 2), 4))
    width = 0.8 / max(1, len(targets))
    for k, target in enumerate(targets):
        ratios = {r["model"]: r.get("ratio") for r in result["results"]
                  if r["target"] == target and r["batch"] == 1 and not r.get("unavailable")}
        xs = [i + k * width for i, n in enumerate(names) if ratios.get(n) is not None]
        ax.bar(xs, [ratios[n] for n in names if ratios.get(n) is not None], width, label=target)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks([i + width * (len(targets) - 1) / 2 for i in range(len(names))])
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_ylabel(f"batch-1 latency / {result['benchmark']['baseline']}")
    ax.legend(fontsize="small")
    fig.tight_layout()
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return Path(path)


def output_paths(json_path: str | os.PathLike) -> tuple[Path, Path, Path]:
    """Where :func:`write` puts the JSON, the Markdown and the plot; a ConfigError when the
    JSON's name would be one of the others' (``report.md``), before a benchmark is run."""
    json_path = Path(json_path)
    if json_path.suffix.lower() in (".md", ".png"):
        raise ConfigError(f"bench: the JSON path '{json_path}' ends in {json_path.suffix}, the "
                          "suffix of the Markdown or the plot written beside it, so one would "
                          f"overwrite the other; give a .json path, e.g. "
                          f"'{json_path.with_suffix('.json')}'.")
    return json_path, json_path.with_suffix(".md"), json_path.with_suffix(".png")


def write(result: dict, json_path: str | os.PathLike) -> list[Path]:
    """``<name>.json``, ``<name>.md`` and ``<name>.png`` side by side."""
    json_path, markdown_path, plot_path = output_paths(json_path)
    return [files.write_json(json_path, result), files.write_text(markdown_path, markdown(result)),
            plot(result, plot_path)]
