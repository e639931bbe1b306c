"""How each layer type moves channels, and how its weights are sliced or masked.

A channel is an integer id.  A rule says which ids a layer's outputs carry given its
inputs' ids (new ids for a layer that makes channels, the same ids for one that works
channel by channel), and how to cut its weights when some ids go.  A layer without a rule
freezes the channels it touches: they are reported, and left intact.
"""
from __future__ import annotations


from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..backend import keras

L = keras.layers


class Unsupported(Exception):
    """The layer's channels cannot be cut here; the message says why."""


@dataclass
class Cut:
    """What survives at one layer: a boolean per input channel (per input) and per output
    channel, and per internal unit (attention heads)."""

    keep_in: list[np.ndarray]
    keep_out: np.ndarray
    keep_inner: np.ndarray | None = None


@dataclass
class Rule:
    """A layer type's channel behaviour.

    ``outputs(layer, in_ids, fresh)`` returns the output's ids (``fresh(n)`` makes new
    ones); ``inner(layer)`` the number of internal units (heads) or 0; ``config`` and
    ``weights`` shrink; ``mask`` zeroes what reads removed channels; ``scores`` gives the
    weights that make each output channel (rows) for norm importance; ``parts(layer)`` the
    widths of the output's parts that must each keep a channel (a Bidirectional layer's two
    directions), or None for one part.
    """

    outputs: Callable
    source: bool = False  # makes new channels that can be removed at this layer
    config: Callable | None = None
    weights: Callable | None = None
    mask: Callable | None = None
    scores: Callable | None = None
    inner: Callable | None = None
    unifies: Callable = lambda layer: False  # its inputs' channels become one, position by position
    parts: Callable | None = None


RULES: dict[type, Rule] = {}


def register_rule(*layer_types: type, rule: Rule) -> Rule:
    """Teach structured pruning how channels flow through ``layer_types`` (a custom layer).

    The rule is found for subclasses too, unless they have a rule of their own.  Without
    one, a layer is left intact and :meth:`ChannelGraph.describe` says so.
    """
    for layer_type in layer_types:
        if not (isinstance(layer_type, type) and issubclass(layer_type, L.Layer)):
            raise TypeError(f"register_rule: {layer_type!r} is not a Keras layer class.")
        RULES[layer_type] = rule
    return rule


def rule_for(layer: L.Layer) -> Rule | None:
    for cls in type(layer).__mro__:
        if cls in RULES:
            return RULES[cls]
    return None


def passthrough(layer, in_ids, fresh):
    """``Rule.outputs`` of a layer whose output channel i is its input channel i."""
    return in_ids[0]


def mixes_outputs(layer) -> str | None:
    """Why the layer's own output channels cannot be cut (a softmax over them), or None."""
    name = getattr(getattr(layer, "activation", None), "__name__", "")
    return f"its {name} mixes its output channels" if name in ("softmax", "log_softmax") else None


def _channel_activation(layer) -> None:
    if reason := mixes_outputs(layer):
        raise Unsupported(reason)


# ---------------------------------------------------------------- channel by channel

PASS_THROUGH = (
    L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D, L.GaussianNoise,
    L.GaussianDropout, L.ActivityRegularization, L.ReLU, L.LeakyReLU, L.ELU, L.ThresholdedReLU,
    L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.AveragePooling1D, L.AveragePooling2D,
    L.AveragePooling3D, L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
    L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D,
    L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D, L.Cropping1D, L.Cropping2D,
    L.Cropping3D, L.UpSampling1D, L.UpSampling2D, L.UpSampling3D,
)
for _cls in PASS_THROUGH:
    RULES[_cls] = Rule(passthrough)


def _activation(layer, in_ids, fresh):
    _channel_activation(layer)
    return in_ids[0]


RULES[L.Activation] = Rule(_activation)


def _softmax(layer, in_ids, fresh):
    raise Unsupported("softmax mixes its channels")


RULES[L.Softmax] = Rule(_softmax)


def _layer_norm(layer, in_ids, fresh):
    raise Unsupported("normalizes over its channels, so removing one changes the others")


RULES[L.LayerNormalization] = Rule(_layer_norm)


def _batchnorm(layer, in_ids, fresh):
    axes = list(layer.axis) if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    rank = layer.input_spec.ndim
    if [a % rank for a in axes] != [rank - 1]:
        raise Unsupported(f"normalizes axis {axes}, not the channel axis")
    return in_ids[0]


RULES[L.BatchNormalization] = Rule(
    _batchnorm,
    weights=lambda layer, w, cut: [v[cut.keep_out] for v in w],
)


def _depthwise(layer, in_ids, fresh):
    if layer.depth_multiplier != 1:
        raise Unsupported("depth_multiplier > 1 ties several outputs to one input channel")
    return in_ids[0]


RULES[L.DepthwiseConv2D] = Rule(
    _depthwise,
    weights=lambda layer, w, cut: [w[0][..., cut.keep_out, :], *(v[cut.keep_out] for v in w[1:])],
)


def _flatten(layer, in_ids, fresh):
    shape = layer.input.shape[1:]
    if any(d is None for d in shape):
        raise Unsupported("flattens a dimension of unknown size")
    return np.tile(in_ids[0], int(np.prod(shape[:-1])))


RULES[L.Flatten] = Rule(_flatten)


def _reshape(layer, in_ids, fresh):
    if tuple(layer.target_shape)[-1:] != tuple(layer.input.shape)[-1:]:
        raise Unsupported("changes the channel axis, so channels have no defined place")
    return in_ids[0]


RULES[L.Reshape] = Rule(_reshape, config=lambda layer, cfg, cut: {
    **cfg, "target_shape": (*tuple(cfg["target_shape"])[:-1], int(cut.keep_out.sum()))})


# ---------------------------------------------------------------- merges

for _cls in (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum):
    RULES[_cls] = Rule(passthrough, unifies=lambda layer: True)


def _joins_channels(layer) -> bool:
    return layer.axis in (-1, len(layer.output.shape) - 1)


RULES[L.Concatenate] = Rule(
    lambda layer, in_ids, fresh: np.concatenate(in_ids) if _joins_channels(layer) else in_ids[0],
    unifies=lambda layer: not _joins_channels(layer))  # joined along time: channels line up


# ---------------------------------------------------------------- layers that make channels

def _rows_in(kernel: np.ndarray, keep: np.ndarray, axis: int) -> np.ndarray:
    return np.compress(keep, kernel, axis=axis)


def _dense_like(units_key: str, in_axis: int):
    """Dense / Conv: kernel [..., in, out], bias [out]."""

    def outputs(layer, in_ids, fresh):
        if getattr(layer, "groups", 1) != 1:
            raise Unsupported("grouped convolution ties channels in groups")
        return fresh(getattr(layer, units_key))

    def weights(layer, w, cut):
        kernel = _rows_in(w[0], cut.keep_in[0], in_axis)[..., cut.keep_out]
        return [kernel, *(b[cut.keep_out] for b in w[1:])]

    def mask(layer, w, removed_in, removed_out, removed_inner=None):
        kernel = w[0].copy()
        index = [slice(None)] * kernel.ndim
        index[in_axis] = removed_in[0]
        kernel[tuple(index)] = 0.0
        return [kernel, *w[1:]]

    return Rule(outputs, source=True,
                config=lambda layer, cfg, cut: {**cfg, units_key: int(cut.keep_out.sum())},
                weights=weights, mask=mask,
                scores=lambda layer, w: np.moveaxis(w[0], -1, 0).reshape(w[0].shape[-1], -1))


RULES[L.Dense] = _dense_like("units", 0)
for _cls in (L.Conv1D, L.Conv2D, L.Conv3D):
    RULES[_cls] = _dense_like("filters", -2)


def _transposed(layer, in_ids, fresh):
    raise Unsupported("transposed convolutions (kernel [..., filters, in]) are not mapped")


for _cls in (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose):
    RULES[_cls] = Rule(_transposed)  # subclasses of Conv: must not inherit its rule


def _separable_outputs(layer, in_ids, fresh):
    if layer.depth_multiplier != 1:
        raise Unsupported("depth_multiplier > 1 ties several outputs to one input channel")
    return fresh(layer.filters)


def _separable_weights(layer, w, cut):
    depthwise = w[0][..., cut.keep_in[0], :]
    pointwise = w[1][..., cut.keep_in[0], :][..., cut.keep_out]
    return [depthwise, pointwise, *(b[cut.keep_out] for b in w[2:])]


def _separable_mask(layer, w, removed_in, removed_out, removed_inner=None):
    pointwise = w[1].copy()
    pointwise[..., removed_in[0], :] = 0.0
    return [w[0], pointwise, *w[2:]]


for _cls in (L.SeparableConv1D, L.SeparableConv2D):
    RULES[_cls] = Rule(
        _separable_outputs, source=True,
        config=lambda layer, cfg, cut: {**cfg, "filters": int(cut.keep_out.sum())},
        weights=_separable_weights, mask=_separable_mask,
        scores=lambda layer, w: np.moveaxis(w[1], -1, 0).reshape(w[1].shape[-1], -1))


RULES[L.Embedding] = Rule(
    lambda layer, in_ids, fresh: fresh(layer.output_dim), source=True,
    config=lambda layer, cfg, cut: {**cfg, "output_dim": int(cut.keep_out.sum())},
    weights=lambda layer, w, cut: [w[0][:, cut.keep_out]],
    mask=lambda layer, w, removed_in, removed_out, removed_inner=None: w,
    scores=lambda layer, w: w[0].T,
)


# ---------------------------------------------------------------- attention

def _mha_outputs(layer, in_ids, fresh):
    if layer._attention_axes is not None and len(layer._attention_axes) != 1:
        raise Unsupported("attention over several axes")
    if not layer._use_bias:
        raise Unsupported("use_bias=False attention is not mapped")
    if len(in_ids) > 2:
        raise Unsupported("called with a separate key or a mask: only attention(query, value) is mapped")
    return fresh(int(layer._output_dense.kernel.shape[-1]))


def _mha_config(layer, cfg, cut):
    out = int(cut.keep_out.sum())
    return {**cfg, "num_heads": int(cut.keep_inner.sum()), "output_shape": out}


def _mha_weights(layer, w, cut):
    """q/k/v kernels [in, heads, dim] and biases [heads, dim]; output [heads, dim, out]."""
    q, qb, k, kb, v, vb, o, *ob = w
    h = cut.keep_inner
    keep_q, keep_v = cut.keep_in[0], cut.keep_in[1] if len(cut.keep_in) > 1 else cut.keep_in[0]
    keep_k = cut.keep_in[2] if len(cut.keep_in) > 2 else keep_v
    return [q[keep_q][:, h], qb[h], k[keep_k][:, h], kb[h], v[keep_v][:, h], vb[h],
            o[h][..., cut.keep_out], *(b[cut.keep_out] for b in ob)]


def _mha_mask(layer, w, removed_in, removed_out, removed_inner=None):
    w = [x.copy() for x in w]
    kernels = {0: 0, 1: 4, 2: 2}  # input position -> q, v, k kernel index in the weights
    for position, removed in enumerate(removed_in):
        w[kernels[position]][removed] = 0.0
        if position == 1 and len(removed_in) == 2:
            w[2][removed] = 0.0  # the key is the value
    if removed_inner is not None:
        w[6][removed_inner] = 0.0  # a removed head contributes nothing to the output
    return w


def _mha_scores(layer, w):
    return np.moveaxis(w[6], -1, 0).reshape(w[6].shape[-1], -1)


def _mha_head_scores(layer, w):
    q, _, k, _, v, _, o, *_ = w
    heads = q.shape[1]
    return np.concatenate([np.moveaxis(q, 1, 0).reshape(heads, -1), np.moveaxis(k, 1, 0).reshape(heads, -1),
                           np.moveaxis(v, 1, 0).reshape(heads, -1), o.reshape(heads, -1)], axis=1)


RULES[L.MultiHeadAttention] = Rule(
    _mha_outputs, source=True, config=_mha_config, weights=_mha_weights, mask=_mha_mask,
    scores=_mha_scores, inner=lambda layer: layer._num_heads)
MHA_HEAD_SCORES = _mha_head_scores
