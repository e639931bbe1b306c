"""The quantization grid: which weights can take 4 or 8 bits, and the values they take.

One grid for every stage, so what is measured, trained and exported is the same thing:
symmetric, per output channel, ``scale = max|w| / (2**(bits-1) - 1)`` (floored at 1e-9),
values rounded to the nearest step.  It is the grid ai-edge-quantizer's channelwise
symmetric min-max recipe computes, so weights trained on it (:mod:`.qat`) export to INT4 and
INT8 tensors exactly, and zeros stay zeros (pruned weights remain pruned).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import keras, tf
from ..errors import ModelError
from ..metrics import leaf_layers, unwrap

BITS = (4, 8)
MIN_SCALE_BOUND = 1e-9  # ai-edge-quantizer's floor on max|w|, so an all-zero channel stays 0
TENSOR_BYTES = 110  # a quantized weight's second tensor, its DEQUANTIZE op and their metadata


@dataclass(frozen=True)
class Quantizable:
    """A layer weight that can be quantized, and the Keras axes that have a scale each.

    ``bits`` are the widths TFLite can hold for it: ai-edge-quantizer has no INT4 for
    depthwise convolutions, so their kernels keep 8 bits whatever the allocation says.
    """

    layer: str
    attr: str  # the weight's attribute on the layer, e.g. "kernel"
    channel_axes: tuple[int, ...]  # axes kept by the max: one scale per index along them
    shape: tuple[int, ...]
    bits: tuple[int, ...] = BITS

    @property
    def params(self) -> int:
        return int(np.prod(self.shape))

    @property
    def channels(self) -> int:
        return int(np.prod([self.shape[a] for a in self.channel_axes]))

    def stored_bytes(self, bits: int) -> int:
        """Bytes it adds to a ``.tflite`` at ``bits``: packed values, a float32 scale and an
        int64 zero point per channel, and about 110 bytes for the tensor and DEQUANTIZE op
        (measured on LeNet-5 files: predicted 24,295 B, written 24,296 B)."""
        return (self.params * bits + 7) // 8 + 12 * self.channels + TENSOR_BYTES


def quantizable(model: keras.Model) -> list[Quantizable]:
    """Every weight of ``model`` the mixed 4/8-bit export can quantize, in layer order.

    Dense and convolution kernels have a scale per output channel (TFLite's weight layout
    has it first), embedding tables a scale per row, depthwise kernels per channel.
    Recurrent and attention weights are not listed: ai-edge-quantizer has no recipe for
    TFLite's fused LSTM or the einsum form attention takes, so they stay float32.
    """
    found, owners = [], {}
    for layer in leaf_layers(model):
        layer = unwrap(layer)
        for attr, axes, bits in _weights_of(layer):
            if owners.setdefault(layer.name, layer) is not layer:  # bits are given by layer name
                raise ModelError(f"'{model.name}' has two quantizable layers named '{layer.name}' (one "
                                 "inside a nested model); bits are given by layer name, so rename one.")
            weight = getattr(layer, attr)
            shape = tuple(int(d) for d in weight.shape)
            found.append(Quantizable(layer.name, attr, tuple(a % len(shape) for a in axes), shape, bits))
    return found


def plain_layer(model: keras.Model, name: str, where: str) -> keras.layers.Layer:
    """The quantizable layer ``name`` of ``model``, nested models searched.  One inside a
    pruning or quantization wrapper is refused: the forward pass reads the wrapper's
    (masked) weights, not the layer's."""
    for layer in leaf_layers(model):
        inner = unwrap(layer)
        if inner.name != name:
            continue
        if inner is not layer:
            raise ModelError(f"{where}: layer '{name}' is inside the wrapper '{layer.name}'; take the "
                             "wrappers off first (kerasprune.strip(model) for pruning wrappers).")
        return layer
    raise ModelError(f"{where}: '{model.name}' has no layer '{name}'.")


def _weights_of(layer: keras.layers.Layer) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    L = keras.layers
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        return [("depthwise_kernel", (-2, -1), (8,)), ("pointwise_kernel", (-1,), BITS)]
    if isinstance(layer, L.DepthwiseConv2D):
        return [("depthwise_kernel", (-2, -1), (8,))]
    # transposed convolutions subclass Conv1D/Conv2D, but their kernels put the output
    # channels second to last, and TFLite's TRANSPOSE_CONV has no INT4/INT8 recipe
    transposed = (L.Conv1DTranspose, L.Conv2DTranspose)
    if isinstance(layer, (L.Dense, L.Conv1D, L.Conv2D)) and not isinstance(layer, transposed):
        return [("kernel", (-1,), BITS)]
    if isinstance(layer, L.Embedding):
        return [("embeddings", (0,), BITS)]
    return []


def _reduce_axes(rank: int, channel_axes: tuple[int, ...]) -> list[int]:
    return [a for a in range(rank) if a not in channel_axes]


def quantize(weight: np.ndarray, bits: int, channel_axes: tuple[int, ...]) -> np.ndarray:
    """``weight`` rounded to the grid (NumPy), as the export will store it."""
    qmax = 2.0 ** (bits - 1) - 1
    w = np.asarray(weight, dtype=np.float32)
    bound = np.max(np.abs(w), axis=tuple(_reduce_axes(w.ndim, channel_axes)), keepdims=True)
    scale = np.maximum(bound, MIN_SCALE_BOUND) / qmax
    return (np.clip(np.rint(w / scale), -qmax, qmax) * scale).astype(np.float32)


def fake_quantize(weight: tf.Tensor, bits: int, channel_axes: tuple[int, ...]) -> tf.Tensor:
    """``weight`` on the grid in the forward pass, with the identity gradient (straight-through).

    The same values as :func:`quantize`, in TensorFlow, for quantization-aware training.
    """
    qmax = 2.0 ** (bits - 1) - 1
    bound = tf.reduce_max(tf.abs(weight), axis=_reduce_axes(weight.shape.rank, channel_axes),
                          keepdims=True)
    scale = tf.maximum(bound, MIN_SCALE_BOUND) / qmax
    on_grid = tf.clip_by_value(tf.round(weight / scale), -qmax, qmax) * scale
    return weight + tf.stop_gradient(on_grid - weight)
