"""The report of a compression search: every trial, the Pareto front, the peers beside it."""
from __future__ import annotations

from pathlib import Path

from .. import files


def size_key(section: dict) -> str:
    return "tflite_gzip_bytes" if section["search"]["size"] == "gzip" else "tflite_bytes"


def dominated_by(section: dict, run: dict) -> list[dict]:
    """The Pareto trials at least as accurate (reported split) and as small as ``run``, one strictly."""
    key = size_key(section)
    return [t for t in section["trials"] if t.get("pareto")
            and t["test_accuracy"] >= run["accuracy"] and t[key] <= run[key]
            and (t["test_accuracy"] > run["accuracy"] or t[key] < run[key])]


def _sparsity(hp: dict, trial: dict) -> str:
    """The sparsity a trial asked for, and what it reached where that fell short."""
    asked, reached = hp.get("sparsity", 0), trial.get("sparsity")
    return f"{asked:g}" if reached is None or reached >= asked - 0.01 else f"{asked:g} (reached {reached:.2f})"


def markdown(section: dict, figure: Path) -> list[str]:
    settings = section["search"]
    budget = ", ".join(f"{k} {settings[k]:,}" for k in ("max_bytes", "max_latency_ms") if settings.get(k))
    lines = [f"# {section['experiment']}: compression search", "",
             f"- reproduce: `{section['command']}`",
             f"- {settings['search']} search, {len(section['trials'])} finished trials of "
             f"at most {settings['max_trials']}; budget: {budget or 'none'} ({settings['size']} bytes); "
             f"space {settings['space'] or 'the defaults'}",
             f"- machine: {section['environment'].get('cpu', '?')}", "",
             "Trials are chosen on the search's validation split (held out of training); the "
             f"Pareto trials' files are also scored on the reported split `{section['evaluated_on']}`, "
             "where the runs below were measured.", "",
             "| trial | ratio | sparsity | precision | 8-bit fraction | val accuracy | bytes | gzip bytes "
             f"| latency ms | score | Pareto | {section['evaluated_on']} accuracy |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in sorted(section["trials"], key=lambda t: -t["val_accuracy"]):
        hp = t["hyperparameters"]
        fraction = hp.get("eight_bit_fraction", "-") if hp["precision"] == "mixed" else "-"
        reported = f"yes | {t['test_accuracy']:.4f}" if t.get("pareto") else " | -"
        lines.append(
            f"| {t['trial']} | {hp.get('ratio', 0):g} | {_sparsity(hp, t)} | {hp['precision']} | "
            f"{fraction} | {t['val_accuracy']:.4f} | {int(t['tflite_bytes']):,} | "
            f"{int(t['tflite_gzip_bytes']):,} | {t['latency_ms']:.3f} | {t['score']:.4f} | {reported} |")
    lines += ["", "| run | accuracy | bytes | gzip bytes | Pareto trials that dominate it |",
              "|---|---|---|---|---|"]
    for run in section["runs"]:
        beaters = dominated_by(section, run)
        lines.append(f"| `{run['run']}` | {run['accuracy']:.4f} | {run['tflite_bytes']:,} | "
                     f"{run['tflite_gzip_bytes']:,} | {', '.join(t['trial'] for t in beaters) or 'none'} |")
    for failed in section.get("failed_trials", []):
        lines.append(f"\nTrial {failed['trial']} ({failed['hyperparameters']}) failed: "
                     f"{failed['reason'][0]}")
    return lines + ["", f"![pareto]({figure.as_posix()})", ""]


def plot(section: dict, folder: Path) -> Path:
    """Accuracy against bytes: every trial, the front, and the config's runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = size_key(section)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    trials = section["trials"]
    ax.scatter([t[key] for t in trials], [t["val_accuracy"] for t in trials], color="0.7",
               label="trials (the search's held-out validation)")
    front = sorted((t for t in trials if t.get("pareto")), key=lambda t: t[key])
    ax.plot([t[key] for t in front], [t["test_accuracy"] for t in front], marker="o",
            label=f"Pareto trials, reported split ({section['evaluated_on']}), like the runs")
    for run in section["runs"]:
        ax.scatter(run[key], run["accuracy"], marker="s", color="tab:red")
        ax.annotate(run["run"], (run[key], run["accuracy"]), fontsize=7, xytext=(4, 2),
                    textcoords="offset points")
    ax.set(xscale="log", xlabel=f"TFLite {section['search']['size']} bytes", ylabel="accuracy",
           title=f"{section['experiment']}: accuracy against bytes")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    target = folder / "pareto.png"
    with files.atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return target


def write_report(section: dict, results_json: Path) -> Path:
    """``<name>.tune.md`` and its plot next to ``results_json``, from the section alone."""
    report = Path(results_json).with_suffix(".md")
    figure = plot(section, report.with_suffix(""))
    files.write_text(report, "\n".join(markdown(section, figure.relative_to(report.parent))))
    return report


def rebuild_report(results_json: str | Path) -> Path:
    """Rebuild a search's report from its ``.tune.json``, without rerunning anything."""
    import json

    return write_report(json.loads(Path(results_json).read_text()), Path(results_json))
