"""Per-layer INT4/INT8 weights in a float ``.tflite``, through ai-edge-quantizer.

ai-edge-quantizer takes a recipe of (regex over an op's output tensor name, op type,
bits).  Output names do not name layers reliably (a model's last op is
``StatefulPartitionedCall:0``), so each op is matched to its layer by the name of the
weight it reads, and the recipe names every op's output exactly.

Its recipes cover FULLY_CONNECTED, CONV_2D and DEPTHWISE_CONV_2D (INT8 only), and for
tables EMBEDDING_LOOKUP, but the converter lowers a Keras ``Embedding`` to GATHER, which
it does not quantize.  The export therefore converts embeddings through TFLite's
``embedding_matmul`` composite, which the converter fuses into EMBEDDING_LOOKUP.
"""
from __future__ import annotations

import re
from typing import Mapping

from ..backend import keras, tf
from ..errors import ExportError
from .flatbuffer import WeightedOp, weighted_ops

#: what ai-edge-quantizer can store for the weights of each op, in bits
OP_BITS = {"FULLY_CONNECTED": (4, 8), "CONV_2D": (4, 8), "DEPTHWISE_CONV_2D": (8,),
           "EMBEDDING_LOOKUP": (4, 8)}
COMPUTE = ("float", "dynamic")


@tf.function(experimental_implements="embedding_matmul")
def _lookup(table, ids):
    # The converter replaces this whole function by EMBEDDING_LOOKUP(ids, table).
    return tf.gather(table, ids)


class LookupEmbedding(keras.layers.Embedding):
    """An ``Embedding`` that converts to EMBEDDING_LOOKUP (1-D ids, so ids are flattened)."""

    def call(self, inputs):
        ids = tf.cast(inputs, tf.int32)
        rows = _lookup(self.embeddings, tf.reshape(ids, [-1]))
        return tf.reshape(rows, tf.concat([tf.shape(ids), [self.output_dim]], 0))


def with_lookup_embeddings(model: keras.Model) -> keras.Model:
    """``model`` with every ``Embedding`` as a :class:`LookupEmbedding` (same weights)."""
    if not any(type(layer) is keras.layers.Embedding for layer in model.layers):
        return model

    def swap(layer):
        if type(layer) is keras.layers.Embedding:
            return LookupEmbedding.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    clone = keras.models.clone_model(model, clone_function=swap)
    clone.set_weights(model.get_weights())
    return clone


def layer_of(op: WeightedOp, layers: set[str]) -> str | None:
    """The layer whose weight ``op`` reads: a name segment of the weight tensor's name."""
    for part in re.split(r"[;/]", op.weight):
        if part in layers:
            return part
    return None


def apply_bits(content: bytes, bits: Mapping[str, int], compute: str = "float") -> bytes:
    """Store each layer's weights in ``content`` at ``bits[layer]`` bits.

    ``compute="float"`` keeps the ops float and dequantizes the weights before them (the
    outputs a Keras model on the grid gives); ``"dynamic"`` runs FULLY_CONNECTED and
    CONV_2D on the integer weights, quantizing activations on the fly.  EMBEDDING_LOOKUP
    always reads the integer table (it scales the rows it looks up: exact, and it never
    dequantizes the whole table).
    """
    from ai_edge_quantizer import qtyping, quantizer

    ops = weighted_ops(content)
    found: dict[str, list[WeightedOp]] = {}
    for op in ops:
        layer = layer_of(op, set(bits))
        if layer is not None:
            found.setdefault(layer, []).append(op)
    missing = sorted(set(bits) - set(found))
    if missing:
        raise ExportError(f"mixed export: no TFLite op reads the weights of {', '.join(missing)}; "
                          "their bits cannot be applied (the converter renamed or fused them).")
    unquantizable = {layer: sorted({op.op for op in layer_ops}) for layer, layer_ops in found.items()
                     if not any(op.op in OP_BITS for op in layer_ops)}
    if unquantizable:
        ops = "; ".join(f"{layer} by {', '.join(names)}" for layer, names in unquantizable.items())
        raise ExportError(f"mixed export: the weights of {ops} cannot be stored in 4 or 8 bits "
                          f"(ai-edge-quantizer quantizes {', '.join(OP_BITS)}); leave those layers "
                          "out of the bits.")
    q = quantizer.Quantizer(bytearray(content))
    for layer, layer_ops in found.items():
        for op in layer_ops:
            if op.op not in OP_BITS:
                continue
            width = bits[layer] if bits[layer] in OP_BITS[op.op] else max(OP_BITS[op.op])
            # A table lookup scales the integer rows it reads, the same values as dequantizing
            # the whole table first, which weight-only storage would do on every call.
            integer = compute == "dynamic" or op.op == "EMBEDDING_LOOKUP"
            add = q.add_dynamic_config if integer else q.add_weight_only_config
            # its scope: the output names, each followed by ";"
            add(f"^{re.escape(op.output)};$", qtyping.TFLOperationName(op.op), width)
    try:
        return bytes(q.quantize(enable_progress_report=False).quantized_model)
    except Exception as exc:  # ai-edge-quantizer raises ValueError/RuntimeError with long text
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"mixed export: ai-edge-quantizer failed: {first}") from exc
