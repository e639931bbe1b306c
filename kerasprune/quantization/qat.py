"""Quantization-aware training at per-layer widths, through tfmot's quantize wrappers.

tfmot's own schemes stop where this one starts: their 8-bit registry has no 4-bit
widths, their per-channel quantizer handles only rank-2 and rank-4 kernels (not Conv1D),
their input-layer transform breaks on the integer inputs of an ``Embedding``, and the
converter would then decide the TFLite types on its own.  So kerasprune keeps tfmot's
machinery (``quantize_annotate_layer``, ``QuantizeConfig``, ``QuantizeScheme``,
``quantize_apply``, ``QuantizeWrapperV2``) and supplies weight-only configs on the
:mod:`.grid`, with a scheme that adds no layout transforms.  Activations stay float: the
export stores the weights as INT4/INT8 tensors (:func:`kerasprune.export.to_tflite`).

Pruned weights stay pruned: a weight that is zero when it is wrapped keeps a fixed zero
mask, as in tfmot's prune-preserving scheme, so fine-tuning cannot regrow it.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import tensorflow_model_optimization as tfmot

from ..backend import keras, require_graph_model
from ..errors import ConfigError, ModelError
from ..metrics import unwrap
from .grid import Quantizable, fake_quantize, plain_layer, quantizable, quantize

Q = tfmot.quantization.keras


class GridQuantizer(Q.quantizers.Quantizer):
    """Fake-quantizes one weight on the grid; with ``preserve_zeros`` its zeros stay zero."""

    def __init__(self, bits: int, channel_axes: tuple[int, ...] | list[int], preserve_zeros: bool = False):
        self.bits, self.channel_axes, self.preserve_zeros = int(bits), tuple(channel_axes), bool(preserve_zeros)

    def build(self, tensor_shape, name: str, layer) -> dict:
        if not self.preserve_zeros:
            return {}
        weight = getattr(layer.layer, name)
        mask = (np.asarray(weight.numpy()) != 0).astype(np.float32)
        return {"mask": layer.add_weight(f"{name}_mask", shape=tensor_shape, trainable=False,
                                         initializer=keras.initializers.Constant(mask))}

    def __call__(self, inputs, training, weights, **kwargs):
        if self.preserve_zeros:
            inputs = inputs * weights["mask"]
        return fake_quantize(inputs, self.bits, self.channel_axes)

    def on_grid(self, weight, weights: dict) -> np.ndarray:
        """The exact grid values ``__call__`` stands for (its straight-through form can be
        an ulp off them), for :func:`bake`."""
        value = np.asarray(weight.numpy())
        if self.preserve_zeros:
            value = value * weights["mask"].numpy()
        return quantize(value, self.bits, self.channel_axes)

    def get_config(self) -> dict:
        return {"bits": self.bits, "channel_axes": list(self.channel_axes),
                "preserve_zeros": self.preserve_zeros}

    def __eq__(self, other) -> bool:
        return isinstance(other, GridQuantizer) and self.get_config() == other.get_config()


class WeightBits(Q.QuantizeConfig):
    """Weight-only quantization of a layer: each listed weight on the grid at its width."""

    def __init__(self, weights: Mapping[str, Mapping[str, Any]]):
        self.weights = {attr: dict(spec) for attr, spec in weights.items()}

    def get_weights_and_quantizers(self, layer):
        return [(getattr(layer, attr), GridQuantizer(**spec)) for attr, spec in self.weights.items()]

    def set_quantize_weights(self, layer, quantize_weights) -> None:
        for attr, weight in zip(self.weights, quantize_weights):
            setattr(layer, attr, weight)

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_activations(self, layer, quantize_activations) -> None:
        pass

    def get_output_quantizers(self, layer):
        return []

    def get_config(self) -> dict:
        return {"weights": self.weights}


class _NoLayoutChange(Q.QuantizeLayoutTransform):
    def apply(self, model, layer_quantize_map):
        return model, layer_quantize_map


class _OnlyAnnotated(Q.QuantizeRegistry):
    def get_quantize_config(self, layer):
        return None

    def supports(self, layer) -> bool:
        return False


class WeightOnlyScheme(Q.QuantizeScheme):
    """Wrap exactly the annotated layers; insert no QuantizeLayer, fold nothing."""

    def get_layout_transformer(self):
        return _NoLayoutChange()

    def get_quantize_registry(self):
        return _OnlyAnnotated()


CUSTOM_OBJECTS = {"GridQuantizer": GridQuantizer, "WeightBits": WeightBits}


def check_bits(model: keras.Model, bits: Mapping[str, int], where: str) -> dict[str, int]:
    """``bits`` (layer name -> 4 or 8) checked against the quantizable layers of ``model``."""
    widths = {}
    for q in quantizable(model):
        widths.setdefault(q.layer, set()).update(q.bits)
    unknown = sorted(set(bits) - set(widths))
    if unknown:
        raise ConfigError(f"{where}: {', '.join(map(repr, unknown))} is not a quantizable layer of "
                          f"'{model.name}'; the quantizable layers are {', '.join(widths) or 'none'}.")
    for name, width in bits.items():
        if isinstance(width, bool) or width not in (4, 8):
            raise ConfigError(f"{where}: layer {name!r} gets {width!r} bits; use 4 or 8.")
    return dict(bits)


def quantize_aware(model: keras.Model, bits: Mapping[str, int]) -> keras.Model:
    """A copy of ``model`` that trains with the weights of each layer in ``bits`` on the grid.

    Depthwise kernels have no INT4 in TFLite and keep 8 bits whatever they are given (the
    pointwise kernel of a separable convolution takes the layer's width).
    """
    model = require_graph_model(model, "quantize_aware", "quantization-aware training")
    bits = check_bits(model, bits, "quantize_aware")
    top_level = {layer.name for layer in model.layers}
    for name in bits:
        if plain_layer(model, name, "quantize_aware").name not in top_level:
            raise ModelError(f"quantize_aware: layer '{name}' is inside a nested model, which tfmot's "
                             "quantize wrappers cannot reach; build the model flat (its layers "
                             "called on the outer model's tensors).")
    by_layer: dict[str, list[Quantizable]] = {}
    for q in quantizable(model):
        by_layer.setdefault(q.layer, []).append(q)

    def annotate(layer):
        if layer.name not in bits:
            return layer
        specs = {}
        for q in by_layer[layer.name]:
            weight = getattr(layer, q.attr).numpy()
            specs[q.attr] = {"bits": bits[layer.name] if bits[layer.name] in q.bits else max(q.bits),
                             "channel_axes": list(q.channel_axes),
                             "preserve_zeros": bool(np.any(weight == 0))}
        return Q.quantize_annotate_layer(layer, WeightBits(specs))

    annotated = keras.models.clone_model(model, clone_function=annotate)
    annotated.set_weights(model.get_weights())
    with Q.quantize_scope(CUSTOM_OBJECTS):
        return Q.quantize_apply(annotated, scheme=WeightOnlyScheme())


def bake(model: keras.Model) -> keras.Model:
    """The plain model a quantization-aware one stands for: its weights on the grid.

    The QAT wrappers go, and every quantized weight is written as the value the forward
    pass uses (masked, rounded), so the float TFLite conversion already carries the grid
    values that the mixed export stores as INT4/INT8 tensors, without rounding again.
    """
    if not any(_ours(layer) for layer in model.layers):
        return model  # nothing of ours: plain, or tfmot's own QAT (the converter reads it)

    def plain(layer):
        inner = unwrap(layer)
        return inner.__class__.from_config(inner.get_config())

    baked = keras.models.clone_model(model, clone_function=plain)
    for original, layer in zip(model.layers, baked.layers):
        if not _ours(original):
            layer.set_weights(original.get_weights())
            continue
        values = _wrapper_values(original, on_grid=True)
        layer.set_weights([values[_short(w)] for w in layer.weights])
    return baked


def float_twin(qat: keras.Model, original: keras.Model) -> keras.Model:
    """``original``'s architecture with the float weights a quantization-aware model (tfmot's
    or kerasprune's) holds now: what params, sparsity and MACs are measured on.

    tfmot's wrappers hide the weights from their layers, so a QAT model cannot be counted
    directly, and tfmot has no function that takes QAT off again.
    """
    twin = keras.models.clone_model(original)
    twin.set_weights(original.get_weights())
    for layer in (layer for layer in twin.layers if layer.weights):
        source = _source_of(qat, layer.name)
        if source is None:
            raise ModelError(f"float_twin: the quantization-aware model has no layer "
                             f"'{layer.name}' (its scheme folded or renamed it).")
        values = (_wrapper_values(source, on_grid=False) if isinstance(source, Q.QuantizeWrapperV2)
                  else {_short(w): w.numpy() for w in source.weights})
        layer.set_weights([values[_short(w)] for w in layer.weights])
    return twin


def _wrapper_values(wrapper, on_grid: bool) -> dict:
    """A quantize wrapper's weights by name: its layer's own and the ones it quantizes, which
    it holds itself (its layer no longer tracks them), on the grid or as trained."""
    values = {_short(w): w.numpy() for w in wrapper.layer.weights}
    for weight, quantizer, variables in wrapper._weight_vars:  # noqa: SLF001
        values[_short(weight)] = quantizer.on_grid(weight, variables) if on_grid else weight.numpy()
    return values


def _source_of(qat: keras.Model, name: str):
    """The layer of ``qat`` that holds the weights of the original layer ``name``."""
    for layer in qat.layers:
        if layer.name == name or (isinstance(layer, Q.QuantizeWrapperV2) and layer.layer.name == name):
            return layer
    return None


def _ours(layer) -> bool:
    return isinstance(layer, Q.QuantizeWrapperV2) and isinstance(layer.quantize_config, WeightBits)


def _short(weight) -> str:
    """A layer weight's own name ("kernel" for "quant_fc/kernel:0")."""
    return weight.name.split("/")[-1].split(":")[0]
