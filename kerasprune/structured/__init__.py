"""Structured pruning: remove whole neurons, filters, embedding columns, LSTM units and heads.

The split follows Torch-Pruning: :mod:`.graph` finds what must be cut together (with
:mod:`.rules`, one per layer type), :mod:`.importance` scores channels, :mod:`.plan`
chooses what goes, and :mod:`.surgery` masks or shrinks the model.
"""
from __future__ import annotations

from ..backend import keras, tf
from ..checks import number
from .graph import Channel, ChannelGraph, analyze
from .importance import IMPORTANCES, activation_points, channel_scores, head_scores
from .plan import Plan, Ratio, make_plan
from . import recurrent  # noqa: F401  (registers the recurrent rules)
from .rules import Rule, passthrough, register_rule
from .cost import PlanCost, ratio_for_macs
from .surgery import mask, masks, shrink


def plan_channels(model: keras.Model, ratio: Ratio = 0.3, *, importance: str = "l1",
                  data: tf.data.Dataset | None = None, scope: str = "layer", round_to: int = 1,
                  head_ratio: Ratio | None = None, graph: ChannelGraph | None = None,
                  batches: int = 8, macs: float | None = None) -> Plan:
    """Score channels by ``importance`` (data methods read ``batches`` of ``data``) and
    choose ``ratio`` of them to remove; with ``macs`` (a fraction of the dense MACs) the
    ratio is instead the least that brings the model within it."""
    graph = graph or analyze(model)
    scores = channel_scores(graph, importance, data, batches)
    options = dict(scope=scope, round_to=round_to, head_ratio=head_ratio, head_scores=head_scores(graph))
    if macs is not None:
        macs = number(macs, "plan_channels macs", low=0.0, high=1.0, low_open=True)
        ratio = ratio_for_macs(macs, graph, scores, PlanCost(model, graph), **options)
    return make_plan(graph, scores, ratio, **options)


__all__ = ["IMPORTANCES", "Channel", "ChannelGraph", "Plan", "PlanCost", "Rule", "activation_points", "analyze",
           "channel_scores",
           "head_scores", "make_plan", "mask", "masks", "passthrough", "plan_channels", "ratio_for_macs", "register_rule",
           "shrink"]
