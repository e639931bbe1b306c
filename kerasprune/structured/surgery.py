"""Cut channels out of a model: ``mask`` zeroes what reads them, ``shrink`` removes them.

Both follow one :class:`Plan` over one :class:`ChannelGraph`, so the masked model (same
shapes, removed channels silenced) and the shrunk one (smaller dense layers) compute the
same function: the test of every rule.
"""
from __future__ import annotations

import numpy as np

from ..backend import keras
from ..errors import ConfigError
from .graph import ChannelGraph, analyze
from .plan import Plan
from .rules import Cut, rule_for


def _cuts(graph: ChannelGraph, plan: Plan) -> dict[str, Cut]:
    if not isinstance(plan, Plan):
        raise ConfigError(f"structured: expected the Plan that plan_channels() or make_plan() "
                          f"returns, got {type(plan).__name__}.")
    removed = np.array(sorted(plan.removed), dtype=np.int64)
    cuts = {}
    for name, (in_ids, out_ids) in graph.node_ids.items():
        def keep(ids):
            return ~np.isin(graph.canonical(ids), removed)
        cuts[name] = Cut([keep(i) for i in in_ids], keep(out_ids[0]), plan.keep_heads.get(name))
    return cuts


def masks(model: keras.Model, plan: Plan, graph: ChannelGraph | None = None) -> dict[str, list[np.ndarray]]:
    """Per layer that the plan reaches, a 0/1 array per weight: 0 where an entry reads a
    removed channel or head.  Multiplied in, they silence the plan (:func:`mask`); as a
    pruning wrapper's masks they hold it through training."""
    graph = graph or analyze(model)
    out = {}
    for name, cut in _cuts(graph, plan).items():
        layer, rule = model.get_layer(name), rule_for(model.get_layer(name))
        if rule is None or rule.mask is None:
            continue
        removed_in = [~k for k in cut.keep_in]
        inner = ~cut.keep_inner if cut.keep_inner is not None else None
        ones = [np.ones(w.shape, np.float32) for w in layer.weights]
        out[name] = rule.mask(layer, ones, removed_in, ~cut.keep_out, inner)
    return out


def mask(model: keras.Model, plan: Plan, graph: ChannelGraph | None = None) -> keras.Model:
    """A copy of ``model`` in which removed channels and heads no longer reach anything."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for name, zeros in masks(model, plan, graph).items():
        layer = copy.get_layer(name)
        layer.set_weights([w * m for w, m in zip(layer.get_weights(), zeros)])
    return copy


def shrink(model: keras.Model, plan: Plan, graph: ChannelGraph | None = None) -> keras.Model:
    """The smaller tf_keras model with removed channels and heads sliced out of its weights."""
    graph = graph or analyze(model)
    cuts = _cuts(graph, plan)

    def rebuild(layer: keras.layers.Layer) -> keras.layers.Layer:
        rule, config = rule_for(layer), layer.get_config()
        if layer.name in cuts and rule is not None and rule.config is not None:
            config = rule.config(layer, config, cuts[layer.name])
        return layer.__class__.from_config(config)

    small = keras.models.clone_model(model, clone_function=rebuild)
    for old in model.layers:
        new, rule = small.get_layer(old.name), rule_for(old)
        weights = old.get_weights()
        if weights and old.name in cuts and rule is not None and rule.weights is not None:
            weights = rule.weights(old, weights, cuts[old.name])
        new.set_weights(weights)
    return small
