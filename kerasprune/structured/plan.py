"""Which channels and heads to remove: ratios per layer, by dict, or one global ranking."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..checks import number
from ..errors import ConfigError
from .graph import ChannelGraph
from .rules import rule_for

Ratio = float | Mapping[str | tuple[str, ...], float]  # by layer name or group key


@dataclass
class Plan:
    """Removed channels (by channel id) and, per attention layer, the heads kept."""

    removed: set[int] = field(default_factory=set)
    keep_heads: dict[str, np.ndarray] = field(default_factory=dict)

    def summary(self, graph: ChannelGraph) -> dict[str, str]:
        """Per group of coupled layers: channels kept / before."""
        out = {}
        for key, channels in graph.groups().items():
            kept = sum(c.id not in self.removed for c in channels)
            out[", ".join(key)] = f"{kept}/{len(channels)}"
        for name, keep in self.keep_heads.items():
            out[f"{name} heads"] = f"{int(keep.sum())}/{keep.size}"
        return out


def _ratio_for(key: tuple[str, ...], ratio: Ratio) -> float:
    if not isinstance(ratio, Mapping):
        return float(ratio)
    if key in ratio:  # by group: the key of graph.groups()
        return float(ratio[key])
    chosen = {ratio[name] for name in key if name in ratio}
    if len(chosen) > 1:
        raise ConfigError(f"plan: layers {', '.join(key)} are cut together but were given "
                          f"different ratios {sorted(chosen)}; give them one ratio.")
    return float(chosen.pop()) if chosen else 0.0


def _check(ratio: Ratio, graph: ChannelGraph) -> None:
    values = ratio.items() if isinstance(ratio, Mapping) else [("ratio", ratio)]
    for name, value in values:
        number(value, f"plan: {name}", low=0.0, high=1.0, high_open=True)
    if isinstance(ratio, Mapping):
        known = {name for key in graph.groups() for name in key} | set(graph.heads)
        unknown = sorted(str(k) for k in set(ratio) - known - set(graph.groups()))
        if unknown:
            raise ConfigError(f"plan: {', '.join(unknown)} have no removable channels; choose from "
                              f"{', '.join(sorted(known))} (see analyze(model).describe()).")


def removed_count(size: int, ratio: float, round_to: int = 1) -> int:
    """How many of ``size`` channels a layer's ``ratio`` removes (one always stays)."""
    return size - _kept(size, int(float(ratio) * size + 1e-9), round_to)


def _kept(size: int, remove: int, round_to: int) -> int:
    """At least one channel, and a multiple of ``round_to`` where the layer allows."""
    kept = max(1, size - remove)
    if round_to > 1:
        kept = min(size, math.ceil(kept / round_to) * round_to)
    return kept


def channel_parts(graph: ChannelGraph) -> list[list[int]]:
    """The channel ids of each part of a layer's output that must keep a channel (its rule's
    ``parts``: a Bidirectional layer's directions, one group together), for every such layer."""
    parts = []
    for layer in graph.model.layers:
        rule = rule_for(layer)
        if rule is None or rule.parts is None or layer.name not in graph.node_ids:
            continue
        ends = np.cumsum(rule.parts(layer))
        channels = [c for c in graph.channels if layer.name in c.sources]
        parts += [[c.id for c in channels if (ends[part - 1] if part else 0) <= c.sources[layer.name] < ends[part]]
                  for part in range(len(ends))]
    return [part for part in parts if part]


def _keep_a_channel_per_part(graph: ChannelGraph, scores: Mapping[int, float], removed: set[int]) -> None:
    """Where the plan empties a part of :func:`channel_parts`, its best-scoring channel comes
    back (one past ``round_to``'s multiple: a part of zero channels cannot be built)."""
    for part in channel_parts(graph):
        if removed.issuperset(part):
            removed.discard(max(part, key=lambda i: scores[i]))


def make_plan(graph: ChannelGraph, scores: Mapping[int, float], ratio: Ratio, *,
              scope: str = "layer", round_to: int = 1, head_ratio: Ratio | None = None,
              head_scores: Mapping[str, np.ndarray] | None = None) -> Plan:
    """Remove the lowest-scoring channels: ``ratio`` of each group of coupled layers
    (``scope="layer"``; a dict gives ratios by layer name, or by the group's key in
    ``graph.groups()`` where a layer makes channels of several groups), or ``ratio`` of
    all channels ranked together with each set's scores divided by their mean (``scope="global"``).

    ``head_ratio`` (default: ``ratio``) removes attention heads by ``head_scores``.
    """
    _check(ratio, graph)
    if head_ratio is not None:
        _check(head_ratio, graph)
    if scope not in ("layer", "global"):
        raise ConfigError(f"plan: scope must be 'layer' or 'global', got {scope!r}.")
    round_to = number(round_to, "plan: round_to", low=1, integer=True)
    groups = graph.groups()
    removed: set[int] = set()
    if scope == "layer":
        for key, channels in groups.items():
            order = sorted(channels, key=lambda c: scores[c.id])
            count = removed_count(len(channels), _ratio_for(key, ratio), round_to)
            removed.update(c.id for c in order[:count])
    else:
        if isinstance(ratio, Mapping):
            raise ConfigError("plan: a global ranking takes one ratio, not a dict.")
        normalized = []
        for key, channels in groups.items():
            mean = float(np.mean([scores[c.id] for c in channels])) or 1.0
            normalized += [(scores[c.id] / mean, key, c.id) for c in channels]
        normalized.sort()
        budget = int(float(ratio) * len(normalized))
        taken: dict[tuple[str, ...], int] = {}
        for _, key, gid in normalized:
            if len(removed) >= budget:
                break
            if len(groups[key]) - taken.get(key, 0) > 1:
                removed.add(gid)
                taken[key] = taken.get(key, 0) + 1
        for key, count in taken.items():  # round kept widths up to the multiple
            size = len(groups[key])
            allowed = size - _kept(size, count, round_to)
            ranked = sorted((c for c in groups[key] if c.id in removed), key=lambda c: -scores[c.id])
            removed.difference_update(c.id for c in ranked[:count - allowed])
    _keep_a_channel_per_part(graph, scores, removed)
    keep_heads = {}
    chosen = ratio if head_ratio is None else head_ratio
    for name, heads in graph.heads.items():
        if name not in (head_scores or {}):
            raise ConfigError(f"plan: no head scores for attention layer '{name}'.")
        drop = heads - _kept(heads, int(_ratio_for((name,), chosen) * heads), 1)
        keep = np.ones(heads, bool)
        keep[np.argsort(np.asarray(head_scores[name]), kind="stable")[:drop]] = False
        keep_heads[name] = keep
    return Plan(removed, keep_heads)
