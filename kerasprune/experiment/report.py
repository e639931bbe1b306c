"""The Markdown report of an experiment, with its plots, made from the results JSON alone.

Nothing here measures: every number in a report comes from ``results`` so the report and
the JSON can never disagree, and a report can be rebuilt without rerunning anything.
"""
from __future__ import annotations

import re
from pathlib import Path

from .. import files
from ..errors import ConfigError
from ..results import read_results
from . import agent_report, traffic_report
from .comparison import best_pairs, best_runs, chosen_on, dense_pairs, peer_pairs, target_label, tried
from .spec import BASELINE, PEER


def _fmt_int(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


_COLUMNS = [
    ("run", lambda r: f"`{r['run']}`"),
    ("accuracy", lambda r: f"{r['accuracy']:.4f}"),
    ("macro F1", lambda r: f"{r['f1']:.4f}"),
    ("sparsity", lambda r: f"{r['sparsity']:.3f}"),
    ("params", lambda r: _fmt_int(r["params"])),
    ("nonzero", lambda r: _fmt_int(r["nonzero_params"])),
    ("MACs", lambda r: _fmt_int(r["macs"])),
    ("effective MACs", lambda r: _fmt_int(r["macs_effective"])),
    ("TFLite KiB", lambda r: f"{r['tflite_bytes'] / 1024:.1f}"),
    ("gzip KiB", lambda r: f"{r['tflite_gzip_bytes'] / 1024:.1f}"),
    ("latency ms (p90)", lambda r: f"{r['latency_ms']:.3f} ({r['latency']['p90_ms']:.3f})"
     if r.get("latency") else "-"),
    ("train FLOPs", lambda r: _fmt_int(r["train_flops"]) if r.get("train_flops") else "-"),
    ("train s", lambda r: f"{r['train_seconds']:.0f}"),
    ("step ms", lambda r: f"{r['train_step_ms']:.1f}" if r.get("train_step_ms") else "-"),
    ("peak MiB", lambda r: f"{r['peak_memory_mb']:.0f}"),
]


#: what the runner writes and a report reads, besides the runs
_EXPERIMENT_FIELDS = ("dataset", "evaluated_on", "model", "budget", "command", "environment")


def read_experiment_results(path: str | Path) -> dict:
    """An experiment's results file, or a ConfigError when it holds a study's or a
    benchmark's results (same schema, but no training history to report on, and their own
    report next to them, which rebuilding would overwrite)."""
    results = read_results(path)
    why = _not_an_experiment(results)
    if why:
        raise ConfigError(f"'{path}' holds the results of `{results.get('command')}`, not of "
                          f"`kerasprune experiment`: {why}, and its own report is the Markdown that "
                          "command wrote next to it; run that command again to rebuild it.")
    return results


def _not_an_experiment(results: dict) -> str | None:
    """Why ``results`` are not an experiment's, or None if they can be."""
    missing = [field for field in _EXPERIMENT_FIELDS if field not in results]
    if not results["runs"]:
        return "it has no runs"
    if missing:
        return f"it has no {', '.join(missing)}"
    if not all("history" in r for r in results["runs"]):
        return "its runs have no training history to report on"
    return None


def rebuild_report(results_json: str | Path) -> Path:
    """Write the report (and plots) of a results JSON next to it, without rerunning anything."""
    path = Path(results_json)
    return write_report(read_experiment_results(path), path.with_suffix(".md"))


def _latency_ratio(run: dict, dense: dict) -> str:
    """The side-by-side ratio when the runs were timed together, else the plain quotient."""
    if run.get("latency_ratio") is not None:
        return f"{run['latency_ratio']:.3f}"
    return _ratio(run, dense, "latency_ms")


def _ratio(run: dict, base: dict, key: str) -> str:
    a, b = run.get(key), base.get(key)
    return f"{a / b:.3f}" if a and b else "-"


def _step_ratio(run: dict, base: dict) -> str:
    """Training-step time against ``base``, only between runs of one batch size (a step of
    64 examples is not a step of 128)."""
    sizes = {r.get("settings", {}).get("batch_size") for r in (run, base)}
    return _ratio(run, base, "train_step_ms") if len(sizes) == 1 else "- (other batch)"


def write_report(results: dict, path: Path) -> Path:
    """Write ``path`` (Markdown) and its PNG plots in ``<path stem>/`` next to it."""
    path = Path(path)
    plots = write_plots(results, path.parent / path.stem)
    runs = results["runs"]
    env = results["environment"]
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v)
    lines = [
        f"# {results['experiment']}",
        "",
        results.get("description", ""),
        "",
        f"- dataset `{results['dataset']}` (reported split: `{results['evaluated_on']}`), "
        f"model `{results['model']}`, budget `{results['budget']}`",
        f"- reproduce: `{results['command']}`",
        f"- machine: {env['cpu']}, {env['cores']} cores, GPUs: {', '.join(env['gpus']) or 'none'}; "
        f"git {env.get('git_commit') or 'unknown'}",
        f"- software: {packages}",
        "",
        "## Results",
        "",
        "| " + " | ".join(name for name, _ in _COLUMNS) + " |",
        "|" + "---|" * len(_COLUMNS),
        *("| " + " | ".join(cell(r) for _, cell in _COLUMNS) + " |" for r in runs),
        "",
        "Accuracy and macro F1 on the reported split; sparsity over prunable weights "
        "(kernels, embeddings); MACs per example (effective: nonzero weights only); latency "
        "is the LiteRT interpreter's batch-1 median on one thread, every run timed in the same "
        "interleaved rounds by kerasprune.benchmark (its ratio to dense is the median of the "
        "per-round ratios); train seconds are "
        "the run's own phase (pruning methods fine-tune the trained dense baseline) and step "
        "ms its median training step.",
        "",
    ]
    dense = next((r for r in runs if r["method"] == BASELINE), None)
    if dense is not None and len(runs) > 1:
        lines += ["## Against the dense baseline", "",
                  "| run | accuracy change (points) | size ratio (raw) | size ratio (gzip) | latency ratio "
                  "| latency ratio, 2 threads | energy estimate µJ | train step ratio |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in runs:
            if r is dense:
                continue
            two = r.get("latency_2t_ratio")
            energy = (r.get("energy") or {}).get("estimated_uj")
            lines.append(
                f"| `{r['run']}` | {100 * (r['accuracy'] - dense['accuracy']):+.2f} | "
                f"{r['tflite_bytes'] / dense['tflite_bytes']:.3f} | "
                f"{r['tflite_gzip_bytes'] / dense['tflite_gzip_bytes']:.3f} | "
                f"{_latency_ratio(r, dense)} | {'-' if two is None else f'{two:.3f}'} | "
                f"{'-' if energy is None else f'{energy:.2f}'} | {_step_ratio(r, dense)} |"
            )
        lines += _best_table(runs, dense_pairs(runs), "dense", (
            "A method that tried several settings at a target (a sparsity or a share of the dense "
            "MACs), for as many epochs as dense: its best of them on validation accuracy against dense."))
        lines.append("")
    lines += _peer_table(runs)
    lines += _quantized_tables(runs)
    kept = [r for r in runs if (r.get("history") or {}).get("kept_epoch")]
    if kept:
        lines += ["## Epoch kept", "", "With `keep_best` each run ends on its best validation epoch "
                  "among those at its final sparsity (the same rule for every method).", "",
                  "| run | epochs | kept epoch | its val_accuracy |", "|---|---|---|---|"]
        for r in kept:
            epoch = int(r["history"]["kept_epoch"][0])
            val = r["history"].get("val_accuracy", [])
            shown = f"{val[epoch - 1]:.4f}" if len(val) >= epoch else "—"
            lines.append(f"| `{r['run']}` | {r['epochs']} | {epoch} | {shown} |")
        lines.append("")
    for r in runs:
        steps = [d for d in r.get("decisions", []) if d["action"] not in ("none", "done")]
        if steps:
            lines += [f"## Pruning decisions of `{r['run']}`", "",
                      "| epoch | action | target sparsity | metric | reference | why |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {d['epoch'] + 1} | {d['action']} | {d['sparsity']:.3f} | "
                      f"{d['metric']:.4f} | {d['reference']:.4f} | {d['reason']} |" for d in steps]
            revived = r.get("history", {}).get("pruning_revived")
            if revived:
                per_epoch = ", ".join(str(int(n)) for n in revived)
                lines += ["", (f"Rewiring revived {int(sum(revived))} pruned weights (per "
                               f"epoch: {per_epoch}), as many live ones making way.")]
            lines.append("")
    lines += agent_report.markdown(runs)
    plots += agent_report.plots(runs, path.parent / path.stem)
    if results.get("traffic"):
        lines += traffic_report.markdown(results["traffic"])
        plots.append(traffic_report.plot(results["traffic"], path.parent / path.stem))
    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{p.stem}]({path.stem}/{p.name})" for p in plots]
        lines.append("")
    return files.write_text(path, "\n".join(lines))


def _quantized_tables(runs: list[dict]) -> list[str]:
    """For each quantized run: how its file stores the weights, and for mixed runs each
    layer's bits with the 4-bit sensitivity they were chosen by."""
    lines = []
    for r in (r for r in runs if r.get("tflite_mode")):
        agreement = r.get("tflite_agreement")
        lines += [f"## Quantization of `{r['run']}`", "",
                  f"Mode `{r['tflite_mode']}`; the file predicts Keras' class for "
                  f"{agreement:.1%} of the check examples (largest output difference "
                  f"{r['tflite_max_abs_diff']:.3g}); "
                  f"{r.get('qat_epochs', 0)} quantization-aware epochs.{_why_slower(r)}", ""]
        stored = {}
        for w in r.get("tflite_weights", []):
            for part in re.split(r"[;/]", w["weight"]):
                stored.setdefault(part, set()).add(w["type"])
        if r.get("bits"):
            lines += ["| layer | bits | params | stored as | 4-bit loss change | 4-bit accuracy change "
                      "(points) | Fisher estimate |", "|---|---|---|---|---|---|---|"]
            for row in r.get("sensitivity", []):
                loss, acc, fisher = row.get("loss_change"), row.get("accuracy_change"), row.get("fisher")
                lines.append(
                    f"| `{row['layer']}` | {r['bits'].get(row['layer'], '-')} | {_fmt_int(row['params'])} | "
                    f"{', '.join(sorted(stored.get(row['layer'], {'?'})))} | "
                    f"{'-' if loss is None else f'{loss:+.4f}'} | "
                    f"{'-' if acc is None else f'{100 * acc:+.2f}'} | "
                    f"{'-' if fisher is None else f'{fisher:.3g}'} |")
            criterion = (r.get("allocation") or {}).get("criterion")
            lines += ["", f"Chosen by `{criterion}`" + (
                f" (weight budget {r['allocation']['byte_budget']} B)" if "byte_budget" in r["allocation"]
                else "") + "; a dash: the layer keeps 8 bits (no INT4 for it in TFLite).", ""]
        else:
            types = sorted({w["type"] for w in r.get("tflite_weights", [])})
            lines += [f"Weights stored as {', '.join(types)}.", ""]
    return lines


def _why_slower(run: dict) -> str:
    """Why a quantized file is slower than float32 (empty when it is not)."""
    ratio = run.get("latency_ratio")
    if ratio is None or ratio <= 1.0:
        return ""
    weights = run.get("tflite_weights", [])
    dequantized = [w for w in weights if w.get("dequantized")]
    why = (f"{len(dequantized)} of its {len(weights)} weight tensors are stored as integers and "
           "dequantized before float ops on every call" if dequantized else
           "its integer kernels, with the quantize and dequantize steps at its float input and "
           "output, cost more than the float kernels")
    return (f" It runs {ratio:.2f}x as long as float32 at batch 1 ({run['latency_ms']:.3f} ms): "
            f"{why}.")


def _varying(runs: list[dict]) -> list[str]:
    """The settings that differ between ``runs`` (what a sweep table shows)."""
    keys = sorted({k for r in runs for k in r["settings"]} - {"sparsity"})
    return [k for k in keys if len({repr(r["settings"].get(k)) for r in runs}) > 1]


def _best_table(runs: list[dict], pairs: list[tuple[dict, dict]], against: str, caption: str) -> list[str]:
    """A "best against" subsection: each swept method's best run against its partner, and
    how many runs each side was chosen among."""
    if not pairs:
        return []
    lines = ["", f"### Best against {against}", "", caption, "",
             f"| method | target | its best run | {against} run | accuracy change (points) |",
             "|---|---|---|---|---|"]
    for r, partner in pairs:
        among = "" if partner["method"] == BASELINE else f" (of {tried(runs, partner)})"
        lines.append(f"| `{r['method']}` | {target_label(r)} | `{r['run']}` "
                     f"(of {tried(runs, r, same_length=True)}) | `{partner['run']}`{among} | "
                     f"{100 * (r['accuracy'] - partner['accuracy']):+.2f} |")
    return lines


def _peer_table(runs: list[dict]) -> list[str]:
    """Each kerasprune run against tfmot's best run at its sparsity, then tfmot's sweep."""
    rows = peer_pairs(runs)
    if not rows:
        return []
    lines = ["## Against tfmot's best run at the same sparsity", "",
             "tfmot's best run at a sparsity is the one of its runs there with the highest "
             "validation accuracy on the epoch it ended on; the reported split never chooses.", "",
             "| run | tfmot's best run | accuracy change (points) | effective MACs ratio | train step ratio |",
             "|---|---|---|---|---|"]
    for r, peer in rows:
        lines.append(f"| `{r['run']}` | `{peer['run']}` | {100 * (r['accuracy'] - peer['accuracy']):+.2f} | "
                     f"{r['macs_effective'] / peer['macs_effective']:.2f} | "
                     f"{_step_ratio(r, peer)} |")
    lines += _best_table(runs, best_pairs(runs), "tfmot's best", (
        "A method that tried several settings at a sparsity, for as many epochs as "
        "tfmot's best run there: its best of them (chosen the same way) against tfmot's best."))
    peers = [r for r in runs if r["method"] == PEER]
    shown = _varying(peers)
    best = {id(r) for r in best_runs(runs, PEER).values()}
    if len(peers) > len(best):
        lines += ["", "### tfmot's sweep", "",
                  "| sparsity | run | " + " | ".join(shown) + " | val accuracy | accuracy | |",
                  "|---|---|" + "---|" * (len(shown) + 3)]
        for r in sorted(peers, key=lambda r: r["settings"].get("sparsity")):
            cells = [str(r["settings"].get(k, "-")) for k in shown]
            lines.append(f"| {r['settings'].get('sparsity')} | `{r['run']}` | " + " | ".join(cells) +
                         f" | {chosen_on(r):.4f} | {r['accuracy']:.4f} | "
                         f"{'best' if id(r) in best else ''} |")
    return lines + [""]


def write_plots(results: dict, folder: Path) -> list[Path]:
    """Accuracy vs sparsity, sparsity and validation accuracy over epochs, size, latency,
    and the mask turnover of dynamic sparse runs."""
    import matplotlib  # here, not at the top: `kerasprune seeds` and the runner's imports skip it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    if not runs:
        return []
    written = []

    def save(fig, name: str) -> None:
        target = folder / f"{name}.png"
        with files.atomic_path(target) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(target)

    fig, ax = plt.subplots(figsize=(6, 4))
    def group(r: dict) -> str:  # one line per method and tag: a sweep's settings stay apart
        return f"{r['method']}-{r['tag']}" if r.get("tag") else r["method"]

    for name in dict.fromkeys(map(group, runs)):
        points = sorted((r["sparsity"], r["accuracy"]) for r in runs if group(r) == name)
        ax.plot(*zip(*points), marker="o", label=name)
    ax.set(xlabel="sparsity", ylabel=f"accuracy ({results['evaluated_on']})",
           title=f"{results['experiment']}: accuracy vs sparsity")
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, "accuracy_vs_sparsity")

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for r in runs:
        history = r.get("history") or {}
        if "sparsity" in history:
            left.plot(range(1, len(history["sparsity"]) + 1), history["sparsity"], label=r["run"])
        if "val_accuracy" in history:
            right.plot(range(1, len(history["val_accuracy"]) + 1), history["val_accuracy"],
                       label=r["run"])
    left.set(xlabel="epoch of the run's phase", ylabel="sparsity", title="sparsity over epochs")
    right.set(xlabel="epoch of the run's phase", ylabel="validation accuracy",
              title="validation accuracy over epochs")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save(fig, "sparsity_over_epochs")

    names = [r["run"] for r in runs]
    fig, ax = plt.subplots(figsize=(max(6, len(runs) * 1.2), 4))
    xs = range(len(runs))
    ax.bar([x - 0.2 for x in xs], [r["tflite_bytes"] / 1024 for r in runs], 0.4, label="TFLite")
    ax.bar([x + 0.2 for x in xs], [r["tflite_gzip_bytes"] / 1024 for r in runs], 0.4, label="gzip")
    ax.set_xticks(list(xs), names, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="KiB", title="model size")
    ax.legend()
    save(fig, "size")

    timed = [i for i, r in enumerate(runs) if r.get("latency")]  # the others say why in the JSON
    fig, ax = plt.subplots(figsize=(max(6, len(runs) * 1.2), 4))
    medians = [runs[i]["latency_ms"] for i in timed]
    # latency_ms is rounded to 4 decimals: on near-equal times the p90 can lie below it
    tails = [max(0.0, runs[i]["latency"]["p90_ms"] - runs[i]["latency_ms"]) for i in timed]
    ax.bar(timed, medians, yerr=[[0] * len(timed), tails], capsize=3)
    ax.set_xticks(list(xs), names, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="ms (median, bar to p90)", title="TFLite batch-1 latency (1 thread)")
    save(fig, "latency")

    moving = [r for r in runs if r.get("dst_updates")]
    if moving:  # dynamic sparse training: how much of the network each update rewired
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in moving:
            ax.plot([u["step"] for u in r["dst_updates"]], [100 * u["turnover"] for u in r["dst_updates"]],
                    marker=".", label=r["run"])
        ax.set(xlabel="training step", ylabel="% of live weights regrown",
               title="mask turnover per update")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        save(fig, "mask_turnover")
    return written
