"""Multiply-accumulates per example, dense and counting only nonzero weights."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..backend import keras, require_graph_model
from ..errors import ModelError
from .counts import effective_values, measured_arrays, measured_weights, unwrap


@dataclass
class Macs:
    """Per-example MACs of a model, dense and sparsity-aware, with a per-layer breakdown."""

    dense: int = 0
    effective: int = 0
    per_layer: dict[str, tuple[int, int]] = field(default_factory=dict)  # name, or path in a nested model
    unknown_layers: list[str] = field(default_factory=list)


# A rule maps (layer, node, value) to [(positions, kernel array)]: each kernel entry is
# used once per position; ``value(variable)`` gives a weight as the layer computes with
# it (masked under a pruning wrapper).  Weight-free MACs (attention) come back as an int.
MacRule = Callable[[keras.layers.Layer, object, Callable], tuple[list[tuple[int, np.ndarray]], int]]
MAC_RULES: dict[type, MacRule] = {}


def register_macs(*layer_types: type):
    """Teach :func:`count_macs` a layer type (for custom layers with kernels)."""

    def decorator(rule: MacRule) -> MacRule:
        for layer_type in layer_types:
            MAC_RULES[layer_type] = rule
        return rule

    return decorator


def _positions(shape, where: str) -> int:
    dims = list(shape[1:-1])
    if any(d is None for d in dims):
        raise ModelError(
            f"{where}: MACs need fixed input sizes, but the shape {tuple(shape)} has an "
            "unknown dimension; build the model with a fixed keras.Input shape."
        )
    return int(np.prod(dims)) if dims else 1


@register_macs(keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
               keras.layers.DepthwiseConv2D, keras.layers.SeparableConv1D,
               keras.layers.SeparableConv2D)
def _output_position_rule(layer, node, value):
    """Each kernel entry is used once per output position (spatial or time step)."""
    positions = _positions(node.output_shapes, layer.name)
    return [(positions, k) for k in measured_arrays(layer, value)], 0


@register_macs(keras.layers.Conv2DTranspose, keras.layers.Conv1DTranspose, keras.layers.Conv3DTranspose)
def _input_position_rule(layer, node, value):
    positions = _positions(node.input_shapes, layer.name)
    return [(positions, k) for k in measured_arrays(layer, value)], 0


@register_macs(keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN, keras.layers.Bidirectional)
def _recurrent_rule(layer, node, value):
    """Input and recurrent kernels are applied once per time step (both directions)."""
    # (batch, time, features); called with initial_state, the sequence is the first input
    shapes = node.input_shapes
    steps = _positions(shapes[0] if isinstance(shapes, list) else shapes, layer.name)
    return [(steps, k) for k in measured_arrays(layer, value)], 0


@register_macs(keras.layers.MultiHeadAttention)
def _attention_rule(layer, node, value):
    """Q/K/V/output projections plus QK^T and attention-times-V."""
    query = node.call_args[0]
    source = node.call_args[1] if len(node.call_args) > 1 else node.call_kwargs["value"]
    key = node.call_kwargs.get("key", source)
    t_q = _positions(query.shape, layer.name)
    t_k = _positions(key.shape, layer.name)
    t_v = _positions(source.shape, layer.name)
    uses = [
        (t_q, value(layer._query_dense.kernel)),
        (t_k, value(layer._key_dense.kernel)),
        (t_v, value(layer._value_dense.kernel)),
        (t_q, value(layer._output_dense.kernel)),
    ]
    heads = layer._num_heads
    # each query position meets the key positions along the attention axes only (all of
    # them by default; attention_axes on a rank-4 input pairs within one axis)
    axes = layer._attention_axes or range(1, len(key.shape) - 1)
    pairs = t_q * int(np.prod([key.shape[a] for a in axes]))
    extra = pairs * heads * (layer._key_dim + layer._value_dim)
    return uses, extra


@register_macs(keras.layers.Embedding)
def _lookup_rule(layer, node, value):
    return [], 0  # a table lookup, no multiplications


def count_macs(model: keras.Model) -> Macs:
    """Per-example MACs, dense and effective, of a functional or Sequential model.

    Layers with kernels but no rule are listed in ``unknown_layers`` (and warned about)
    instead of being counted as zero silently; :func:`register_macs` teaches new ones.
    """
    model = require_graph_model(model, "count_macs", "counting MACs")
    macs = Macs()
    _accumulate_macs(model, macs)
    if macs.unknown_layers:
        warnings.warn(
            "MACs not counted for layers with kernels of unknown type: "
            f"{', '.join(macs.unknown_layers)} (use kerasprune.metrics.register_macs).",
            stacklevel=2,
        )
    return macs


def _nodes_in(model: keras.Model, layer: keras.layers.Layer) -> list:
    """The calls of ``layer`` that belong to ``model``.

    A layer reused by another model (``strip_pruning``, ``clone_model``) keeps that
    model's calls too; counting them would double its MACs.
    """
    own = getattr(model, "_network_nodes", None)
    return [node for i, node in enumerate(layer.inbound_nodes)
            if own is None or f"{layer.name}_ib-{i}" in own]


def _accumulate_macs(model: keras.Model, macs: Macs, prefix: str = "") -> None:
    """Add ``model``'s layers to ``macs``; a nested model's are keyed by their path
    (``backbone/fc``), as their names need only be unique within it."""
    for wrapper in model.layers:
        layer = unwrap(wrapper)
        if isinstance(layer, keras.Model):
            _accumulate_macs(layer, macs, f"{prefix}{layer.name}/")
            continue
        # the most specific class with a rule: a Conv2DTranspose subclass is not a Conv2D
        rule = next((MAC_RULES[t] for t in type(layer).__mro__ if t in MAC_RULES), None)
        if rule is None:
            if measured_weights(layer):
                macs.unknown_layers.append(layer.name)
            continue
        dense = effective = 0
        value = effective_values(wrapper)
        for node in _nodes_in(model, wrapper):
            uses, extra = rule(layer, node, value)
            dense += sum(p * k.size for p, k in uses) + extra
            effective += sum(p * int(np.count_nonzero(k)) for p, k in uses) + extra
        macs.per_layer[prefix + layer.name] = (int(dense), int(effective))
        macs.dense += int(dense)
        macs.effective += int(effective)
