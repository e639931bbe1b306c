"""The report section and plots of the RL agent's runs: its plans per interval, what its
search cost, the widths it chose against the uniform and global rankings, its rewards."""
from __future__ import annotations

from pathlib import Path

from .. import files


def _kept(width: str) -> float:
    kept, before = width.split("/")
    return int(kept) / int(before)


def _confirmed(finalists: list[dict]) -> str:
    if not finalists:
        return "-"
    kept = next(f for f in finalists if f["kept"])
    start = next((f for f in finalists if _starts(f)), None)
    against = "" if start is None else f" vs {start['confirmed']:.4f}"
    whose = f"; kept the global {kept['ranking']} ranking's plan" if kept.get("ranking") else ""
    return f"{kept['confirmed']:.4f}{against} ({sum(not _starts(f) for f in finalists)}{whose})"


def _starts(entry: dict) -> bool:
    """Whether an episode or finalist is its search's starting plan: the uniform one, or
    the plan in place when the agent revises it."""
    return bool(entry.get("uniform") or entry.get("previous"))


def markdown(runs: list[dict]) -> list[str]:
    agents = [r for r in runs if r.get("rl_plans")]
    if not agents:
        return []
    lines = ["## RL agent", "",
             "Each interval's search (DQN episodes on the current weights, judged on held-out "
             "validation batches) and the plan it installed; the budget steps toward the target "
             "(with `revise`, it is the target throughout and later searches revise the plan).  "
             "`start`: the held-out accuracy of the search's first episode, the uniform plan (with "
             "`revise`, after the first interval, the plan in place).  `confirmed`: on the "
             "confirmation batches, the kept plan's accuracy against the starting plan's and the "
             "number of finalists judged there (`-`: no plan was ahead of the start), and whether "
             "the plan kept was a global ranking's (with `start_rankings`).", "",
             "| run | interval | epoch | budget (MACs) | plan's MACs | held-out accuracy | start "
             "| confirmed | search s | ratios |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in agents:
        first = {e.get("interval"): e["accuracy"] for e in r.get("rl_episodes", []) if _starts(e)}
        for p in r["rl_plans"]:
            ratios = ", ".join(f"{k} {v:.2f}" for k, v in p["ratios"].items())
            start = first.get(p["interval"])
            lines.append(f"| `{r['run']}` | {p['interval'] + 1} | {p['epoch'] + 1} | {p['budget']:.3f} | "
                         f"{p['macs']:.3f} | {p['accuracy']:.4f} | {'-' if start is None else f'{start:.4f}'} | "
                         f"{_confirmed(p.get('finalists') or [])} | {p['seconds']:.1f} | {ratios} |")
    lines += ["", "| run | episodes | search s | share of the run's training time |", "|---|---|---|---|"]
    for r in agents:
        share = r.get("agent_share")
        lines.append(f"| `{r['run']}` | {len(r.get('rl_episodes', []))} | {r['agent_seconds']:.1f} | "
                     f"{'-' if share is None else f'{100 * share:.1f}%'} |")
    cut = [r for r in runs if r.get("widths")]
    groups = list(dict.fromkeys(g for r in cut for g in r["widths"]))
    lines += ["", "Widths kept (channels kept / before) by every run that removes channels:", "",
              "| run | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
    lines += [f"| `{r['run']}` | " + " | ".join(r["widths"].get(g, "-") for g in groups) + " |" for r in cut]
    lines.append("")
    return lines


def plots(runs: list[dict], folder: Path) -> list[Path]:
    """``rl_reward``: each episode's reward; ``rl_widths``: kept share per group and run."""
    agents = [r for r in runs if r.get("rl_episodes")]
    if not agents:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in agents:
        episodes = r["rl_episodes"]
        ax.plot(range(1, len(episodes) + 1), [e["reward"] for e in episodes], marker=".", lw=0.8,
                label=r["run"])
    ax.set(xlabel="episode (all intervals, in order)", ylabel="reward (held-out accuracy - λ·MACs)",
           title="RL agent: reward per episode")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    written.append(_save(plt, fig, folder / "rl_reward.png"))

    cut = [r for r in runs if r.get("widths")]
    groups = list(dict.fromkeys(g for r in cut for g in r["widths"]))
    fig, ax = plt.subplots(figsize=(max(6, len(groups) * 1.6), 4))
    width = 0.8 / max(1, len(cut))
    for i, r in enumerate(cut):
        ax.bar([g + i * width for g in range(len(groups))],
               [_kept(r["widths"][name]) if name in r["widths"] else 0 for name in groups], width,
               label=r["run"])
    ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))], groups, fontsize=8)
    ax.set(ylabel="share of channels kept", title="per-group widths: the agent against uniform and global")
    ax.legend(fontsize=7)
    written.append(_save(plt, fig, folder / "rl_widths.png"))
    return written


def _save(plt, fig, target: Path) -> Path:
    with files.atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return target
