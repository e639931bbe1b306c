"""Channel rules of recurrent layers: LSTM, GRU and SimpleRNN units, alone or Bidirectional.

A unit is one column of every gate; removing it also removes its row of the recurrent
kernel, so the survivors compute what they did with its state held at zero.  A
Bidirectional layer's output is [forward units, backward units]: each direction is cut
on its own, and the shrunk layer names its backward layer explicitly.
"""
from __future__ import annotations

import copy

import numpy as np

from ..backend import keras
from ..errors import ConfigError
from .rules import RULES, Cut, Rule, Unsupported

L = keras.layers


def _gates(layer) -> int:
    return {L.LSTM: 4, L.GRU: 3}.get(type(layer), 1)


def _recurrent_outputs(layer, in_ids, fresh):
    if type(layer) not in (L.LSTM, L.GRU, L.SimpleRNN):
        raise Unsupported("only LSTM, GRU and SimpleRNN cells are understood")
    if layer.return_state:
        raise Unsupported("return_state exposes the cell state")
    if len(in_ids) > 1:
        raise Unsupported("an initial_state ties its units to other layers")
    return fresh(layer.units)


def _gate_columns(layer, keep_units: np.ndarray) -> np.ndarray:
    return np.tile(keep_units, _gates(layer))


def _recurrent_weights(layer, w, cut):
    cols = _gate_columns(layer, cut.keep_out)
    kernel = w[0][cut.keep_in[0]][:, cols]
    recurrent = w[1][cut.keep_out][:, cols]
    rest = [b[..., cols] for b in w[2:]]  # GRU reset_after bias is [2, 3 * units]
    return [kernel, recurrent, *rest]


def _recurrent_mask(layer, w, removed_in, removed_out, removed_inner=None):
    kernel, recurrent = w[0].copy(), w[1].copy()
    kernel[removed_in[0]] = 0.0
    recurrent[removed_out] = 0.0  # a removed unit's state no longer feeds the others
    return [kernel, recurrent, *w[2:]]


def _recurrent_scores(layer, w):
    units = layer.units
    parts = [w[0].reshape(w[0].shape[0], -1, units), w[1].reshape(units, -1, units)]
    return np.concatenate([np.moveaxis(p, -1, 0).reshape(units, -1) for p in parts], axis=1)


RULES[L.RNN] = Rule(
    _recurrent_outputs, source=True,
    config=lambda layer, cfg, cut: {**cfg, "units": int(cut.keep_out.sum())},
    weights=_recurrent_weights, mask=_recurrent_mask, scores=_recurrent_scores)


def _bidirectional_outputs(layer, in_ids, fresh):
    if layer.merge_mode != "concat":
        raise Unsupported(f"merge_mode {layer.merge_mode!r} mixes the directions' units (only "
                          "'concat' keeps them apart)")
    forward, backward = layer.forward_layer, layer.backward_layer
    for direction in (forward, backward):
        _recurrent_outputs(direction, in_ids, lambda n: None)
    return fresh(forward.units + backward.units)


def _split(layer, cut: Cut) -> list[Cut]:
    """The cut of each direction: the output is [forward units, backward units]."""
    n = layer.forward_layer.units
    return [Cut(cut.keep_in, cut.keep_out[:n]), Cut(cut.keep_in, cut.keep_out[n:])]


def _bidirectional_config(layer, cfg, cut):
    forward, backward = (int(c.keep_out.sum()) for c in _split(layer, cut))
    if not forward or not backward:  # the plan keeps one unit per group, not per direction
        raise ConfigError(f"structured: the plan removes every unit of {layer.name}'s "
                          f"{'forward' if not forward else 'backward'} direction; lower its ratio.")
    inner = cfg["layer"]
    back = copy.deepcopy(cfg.get("backward_layer") or inner)
    if "backward_layer" not in cfg:  # Keras made the backward copy itself: spell it out
        back["config"].update(go_backwards=not inner["config"].get("go_backwards", False),
                              name=f"backward_{inner['config']['name']}")
    back["config"]["units"] = backward
    inner = copy.deepcopy(inner)
    inner["config"]["units"] = forward
    return {**cfg, "layer": inner, "backward_layer": back}


def _bidirectional_weights(layer, w, cut):
    half, (forward, backward) = len(w) // 2, _split(layer, cut)
    return [*_recurrent_weights(layer.forward_layer, w[:half], forward),
            *_recurrent_weights(layer.backward_layer, w[half:], backward)]


def _bidirectional_mask(layer, w, removed_in, removed_out, removed_inner=None):
    half, n = len(w) // 2, layer.forward_layer.units
    return [*_recurrent_mask(layer.forward_layer, w[:half], removed_in, removed_out[:n]),
            *_recurrent_mask(layer.backward_layer, w[half:], removed_in, removed_out[n:])]


def _bidirectional_scores(layer, w):
    half = len(w) // 2
    rows = [_recurrent_scores(layer.forward_layer, w[:half]),
            _recurrent_scores(layer.backward_layer, w[half:])]
    width = max(r.shape[1] for r in rows)  # zero padding leaves L1 and L2 norms as they are
    return np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]))) for r in rows])


RULES[L.Bidirectional] = Rule(
    _bidirectional_outputs, source=True, config=_bidirectional_config,
    weights=_bidirectional_weights, mask=_bidirectional_mask,
    scores=_bidirectional_scores,
    parts=lambda layer: (layer.forward_layer.units, layer.backward_layer.units))
