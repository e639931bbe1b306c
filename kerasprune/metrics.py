"""What compression is judged by: accuracy, F1, parameters, sparsity, MACs, bytes, memory.

Counting conventions (the same for every method, so figures compare):

* **Prunable weights** are the weights of rank >= 2 (kernels, embeddings, attention
  projections); biases and normalization vectors are not.  *Sparsity* is the fraction of
  zeros among them, per layer and globally.  This is a property of the model, not of a
  method: it includes rank-2 weights a method leaves alone (tfmot and kerasprune do not
  prune depthwise kernels or position embeddings), so it can read below a method's target.
* **Params** count every weight of the model once, without pruning bookkeeping (masks,
  thresholds, step counters of tfmot or kerasprune wrappers); *nonzero params* count
  the nonzero entries of the same weights.
* **MACs** are multiply-accumulates per example (batch 1) of the layers that multiply by
  weights, plus attention's two matrix products.  Elementwise work (BatchNorm, activations,
  pooling, adds) is not counted, as is customary.  *Effective* MACs count only the
  nonzero weights: what a sparse kernel would have to do.
"""
from __future__ import annotations

import gzip
import os
import resource
import threading
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from .backend import keras, require_tf_keras_model, tf
from .errors import ConfigError, ModelError

# Wrappers that are part of the architecture rather than pruning/quantization bookkeeping.
_ARCHITECTURAL_WRAPPERS = (keras.layers.Bidirectional, keras.layers.TimeDistributed)


# ---------------------------------------------------------------- weights and sparsity

def unwrap(layer: keras.layers.Layer) -> keras.layers.Layer:
    """The layer inside pruning/quantization wrappers (tfmot's or kerasprune's)."""
    while isinstance(layer, keras.layers.Wrapper) and not isinstance(layer, _ARCHITECTURAL_WRAPPERS):
        layer = layer.layer
    return layer


def leaf_layers(model: keras.Model) -> Iterable[keras.layers.Layer]:
    """Every layer of ``model`` with nested models flattened (wrappers kept)."""
    for layer in model.layers:
        inner = unwrap(layer)
        if isinstance(inner, keras.Model):
            yield from leaf_layers(inner)
        else:
            yield layer


def prunable_weights(layer: keras.layers.Layer) -> list[tf.Variable]:
    """The weights of ``layer`` that sparsity is measured on (rank >= 2, frozen or not)."""
    return [w for w in unwrap(layer).weights if len(w.shape) >= 2]


def effective_values(layer: keras.layers.Layer) -> Callable[[tf.Variable], np.ndarray]:
    """A lookup from a weight of ``layer`` to the value the layer computes with.

    A pruning wrapper that does not zero its variables (kerasprune's) says so through
    ``effective_weights()``; every other weight is its variable's value.
    """
    known = {}
    if hasattr(layer, "effective_weights"):
        known = {id(v): value for v, value in layer.effective_weights()}
    return lambda variable: known[id(variable)] if id(variable) in known else variable.numpy()


def _prunable_arrays(layer: keras.layers.Layer, value: Callable | None = None) -> list[np.ndarray]:
    value = value or effective_values(layer)
    return [value(w) for w in prunable_weights(layer)]


def layer_sparsity(model: keras.Model) -> dict[str, float]:
    """Fraction of zeros in each layer's prunable weights, for layers that have any."""
    result = {}
    for layer in leaf_layers(model):
        arrays = _prunable_arrays(layer)
        total = sum(a.size for a in arrays)
        if total:
            result[unwrap(layer).name] = sum(int(np.count_nonzero(a == 0)) for a in arrays) / total
    return result


def global_sparsity(model: keras.Model) -> float:
    """Fraction of zeros over all prunable weights of the model."""
    zeros = total = 0
    for layer in leaf_layers(model):
        for a in _prunable_arrays(layer):
            zeros += int(np.count_nonzero(a == 0))
            total += a.size
    return zeros / total if total else 0.0


def _model_weights(model: keras.Model) -> list[tuple[tf.Variable, Callable]]:
    seen, weights = set(), []
    for layer in leaf_layers(model):
        value = effective_values(layer)
        for w in unwrap(layer).weights:
            if id(w) not in seen:
                seen.add(id(w))
                weights.append((w, value))
    return weights


def count_params(model: keras.Model) -> int:
    """Every weight entry once, without wrapper bookkeeping."""
    return int(sum(np.prod(w.shape) for w, _ in _model_weights(model)))


def count_nonzero_params(model: keras.Model) -> int:
    return int(sum(np.count_nonzero(value(w)) for w, value in _model_weights(model)))


# ---------------------------------------------------------------- MACs

@dataclass
class Macs:
    """Per-example MACs of a model, dense and sparsity-aware, with a per-layer breakdown."""

    dense: int = 0
    effective: int = 0
    per_layer: dict[str, tuple[int, int]] = field(default_factory=dict)
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
    return [(positions, k) for k in _prunable_arrays(layer, value)], 0


@register_macs(keras.layers.Conv2DTranspose, keras.layers.Conv1DTranspose, keras.layers.Conv3DTranspose)
def _input_position_rule(layer, node, value):
    positions = _positions(node.input_shapes, layer.name)
    return [(positions, k) for k in _prunable_arrays(layer, value)], 0


@register_macs(keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN, keras.layers.Bidirectional)
def _recurrent_rule(layer, node, value):
    """Input and recurrent kernels are applied once per time step (both directions)."""
    steps = _positions(node.input_shapes, layer.name)  # (batch, time, features)
    return [(steps, k) for k in _prunable_arrays(layer, value)], 0


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
    extra = t_q * t_k * heads * layer._key_dim + t_q * t_k * heads * layer._value_dim
    return uses, extra


@register_macs(keras.layers.Embedding)
def _lookup_rule(layer, node, value):
    return [], 0  # a table lookup, no multiplications


def count_macs(model: keras.Model) -> Macs:
    """Per-example MACs, dense and effective, of a functional or Sequential model.

    Layers with kernels but no rule are listed in ``unknown_layers`` (and warned about)
    instead of being counted as zero silently; :func:`register_macs` teaches new ones.
    """
    model = require_tf_keras_model(model, "count_macs")
    if not getattr(model, "_is_graph_network", False):
        raise ModelError(
            f"count_macs: model '{model.name}' is subclassed; MACs need a functional or "
            "Sequential model whose layer shapes are known."
        )
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


def _accumulate_macs(model: keras.Model, macs: Macs) -> None:
    for wrapper in model.layers:
        layer = unwrap(wrapper)
        if isinstance(layer, keras.Model):
            _accumulate_macs(layer, macs)
            continue
        rule = next((r for t, r in MAC_RULES.items() if type(layer) is t), None)
        if rule is None:
            rule = next((r for t, r in MAC_RULES.items() if isinstance(layer, t)), None)
        if rule is None:
            if prunable_weights(layer):
                macs.unknown_layers.append(layer.name)
            continue
        dense = effective = 0
        value = effective_values(wrapper)
        for node in _nodes_in(model, wrapper):
            uses, extra = rule(layer, node, value)
            dense += sum(p * k.size for p, k in uses) + extra
            effective += sum(p * int(np.count_nonzero(k)) for p, k in uses) + extra
        macs.per_layer[layer.name] = (int(dense), int(effective))
        macs.dense += int(dense)
        macs.effective += int(effective)


# ---------------------------------------------------------------- quality

def classification_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy and macro F1 over the classes that occur in labels or predictions."""
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(y_pred).reshape(-1)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"need equal, non-empty label arrays, got {y_true.shape} and {y_pred.shape}")
    f1s = []
    for c in np.union1d(y_true, y_pred):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {"accuracy": float(np.mean(y_true == y_pred)), "f1": float(np.mean(f1s))}


def evaluate(model: keras.Model, dataset: tf.data.Dataset) -> dict[str, float]:
    """Accuracy and macro F1 of ``model`` on a dataset of ``(x, y)`` batches."""
    model = require_tf_keras_model(model, "evaluate")
    if not isinstance(dataset, tf.data.Dataset) or len(dataset.element_spec) != 2:
        raise ConfigError(f"evaluate: expected a tf.data.Dataset of (inputs, labels) batches, such "
                          f"as kerasprune.data.load(...).test, got {type(dataset).__name__}.")
    labels, preds = [], []
    predict = tf.function(lambda x: tf.argmax(model(x, training=False), axis=-1))
    for x, y in dataset:
        labels.append(y.numpy())
        preds.append(predict(x).numpy())
    return classification_scores(np.concatenate(labels), np.concatenate(preds))


# ---------------------------------------------------------------- bytes and memory

def file_bytes(path: str | os.PathLike) -> int:
    """Size of a file, or of every file below a folder (a SavedModel)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


def gzip_bytes(path: str | os.PathLike) -> int:
    """Size after gzip -9: what sparsity saves in a download or an app bundle."""
    with open(path, "rb") as f:
        return len(gzip.compress(f.read(), compresslevel=9))


class PeakMemory:
    """Peak resident memory (MiB) of this process while the ``with`` block runs.

    On Linux the kernel's high-water mark is reset on entry (``/proc/self/clear_refs``),
    so the figure belongs to the block; elsewhere, or if the reset is refused, a sampling
    thread takes the maximum every 20 ms.
    """

    def __init__(self) -> None:
        self.mb = 0.0
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self._kernel_hwm = False

    def __enter__(self) -> "PeakMemory":
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._kernel_hwm = _proc_status_kb("VmHWM") is not None
        except OSError:
            self._kernel_hwm = False
        if not self._kernel_hwm:
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.mb = max(self.mb, current_rss_mb())

    def __exit__(self, *exc) -> None:
        if self._kernel_hwm:
            self.mb = _proc_status_kb("VmHWM") / 1024
        else:
            self._stop.set()
            self._sampler.join()
            self.mb = max(self.mb, current_rss_mb())


def _proc_status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss_mb() -> float:
    kb = _proc_status_kb("VmRSS")
    if kb is not None:
        return kb / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024 * 1024) if os.uname().sysname == "Darwin" else peak / 1024


__all__ = [
    "Macs", "PeakMemory", "classification_scores", "count_macs", "count_nonzero_params",
    "count_params", "evaluate", "file_bytes", "global_sparsity", "gzip_bytes",
    "effective_values", "layer_sparsity", "leaf_layers", "prunable_weights", "register_macs",
    "unwrap",
]
