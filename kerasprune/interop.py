"""Keras 3 models in and out: tfmot and kerasprune work on tf_keras (Keras 2).

:func:`from_keras3` rebuilds a Keras 3 Sequential or Functional model of standard layers as
a tf_keras model, layer by layer from its config (Keras 3 writes nested objects, dtype
policies and graph edges in its own format; they are translated here), and copies the
weights.  :func:`to_keras3` goes back through the HDF5 format, which Keras 3 still reads.
Both run the two models on the same random batch and refuse a result whose outputs differ.
Keras 3 is imported only when these are called.
"""
from __future__ import annotations

import inspect
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .backend import keras as tf_keras
from .errors import ModelError

_BASE_KWARGS = {"name", "trainable", "dtype", "input_shape", "batch_input_shape", "batch_size",
                "weights", "activity_regularizer", "autocast", "input_dim"}
_HARMLESS = (None, False, 0, "auto", (), [], {})  # Keras 3-only settings left at their default
#: tf_keras settings of how a layer draws in training (kerasprune.random_state), not of what it
#: computes: they go where the other Keras has no such setting
_DRAWING = {"rng_type"}


def _keras3():
    import keras

    if not keras.__version__.startswith("3."):
        raise ModelError(f"from_keras3/to_keras3 need Keras 3; `import keras` gives {keras.__version__}.")
    return keras


def _accepted(cls: type) -> set[str]:
    """Every keyword ``cls`` takes, its bases' included (subclasses pass ``**kwargs`` up)."""
    names = set(_BASE_KWARGS)
    for base in cls.__mro__:
        if "__init__" in vars(base):
            names |= set(inspect.signature(base.__init__).parameters) - {"self", "kwargs"}
    return names


def _class_in(keras_module, name: str) -> type | None:
    for namespace in ("layers", "initializers", "regularizers", "constraints"):
        cls = getattr(getattr(keras_module, namespace), name, None)
        if isinstance(cls, type):
            return cls
    return None


def _translate(value: Any, target=tf_keras) -> Any:
    """Serialized objects in the form ``target`` (tf_keras or Keras 3) reads: dtype policies
    become their name, and settings only the other Keras has go while at their default."""
    if isinstance(value, dict) and "class_name" in value and "config" in value:
        if value["class_name"] in ("DTypePolicy", "FloatDTypePolicy"):
            return value["config"]["name"]
        config = _translate(value["config"], target)
        cls = _class_in(target, value["class_name"])
        if cls is not None and isinstance(config, dict):
            accepted = _accepted(cls)
            config = {k: v for k, v in config.items()
                      if k in accepted or (v not in _HARMLESS and k not in _DRAWING)}
        return {**{k: _translate(v, target) for k, v in value.items() if k != "config"}, "config": config}
    if isinstance(value, dict):
        return {k: _translate(v, target) for k, v in value.items()}
    if isinstance(value, list):
        return [_translate(v, target) for v in value]
    return value


def _layer(entry: dict) -> tf_keras.layers.Layer:
    name, kind = entry["config"].get("name", "?"), entry["class_name"]
    cls = getattr(tf_keras.layers, kind, None)
    if cls is None or entry.get("registered_name") not in (None, kind):
        raise ModelError(f"from_keras3: layer '{name}' ({kind}) has no tf_keras equivalent; "
                         "only standard Keras layers convert (rebuild it from tf_keras layers).")
    config = _translate(entry["config"])
    accepted = _accepted(cls)
    dropped = {k: v for k, v in config.items() if k not in accepted}
    meaningful = {k: v for k, v in dropped.items() if v not in _HARMLESS}
    if meaningful:
        raise ModelError(f"from_keras3: layer '{name}' ({kind}) sets {', '.join(sorted(meaningful))}, "
                         "which tf_keras does not have; convert the model without them.")
    try:
        return cls.from_config({k: v for k, v in config.items() if k in accepted})
    except (TypeError, ValueError) as exc:
        raise ModelError(f"from_keras3: layer '{name}' ({kind}) cannot be rebuilt in tf_keras: {exc}") from None


def _input(config: dict) -> Any:
    return tf_keras.Input(batch_shape=tuple(config["batch_shape"]), dtype=config.get("dtype"),
                          name=config["name"])


def _history(item: Any, tensors: dict) -> Any:
    """Node arguments with Keras 3's ``__keras_tensor__`` records replaced by tf_keras tensors."""
    if isinstance(item, dict) and item.get("class_name") == "__keras_tensor__":
        return tensors[tuple(item["config"]["keras_history"])]
    if isinstance(item, (list, tuple)):
        return type(item)(_history(i, tensors) for i in item)
    if isinstance(item, dict):
        return {k: _history(v, tensors) for k, v in item.items()}
    return item


def _ends(spec: list, tensors: dict) -> list:
    spec = [spec] if spec and isinstance(spec[0], str) else spec
    return [tensors[tuple(s)] for s in spec]


def _rebuild(model) -> tf_keras.Model:
    config = model.get_config()
    if type(model).__name__ == "Sequential":
        layers = config["layers"]
        first = layers[0] if layers and layers[0]["class_name"] == "InputLayer" else None
        if first is None:
            raise ModelError(f"from_keras3: Sequential model '{model.name}' has no Input; build it "
                             "with keras.Input(shape) first.")
        return tf_keras.Sequential([_input(first["config"]), *map(_layer, layers[1:])], name=model.name)
    tensors: dict[tuple, Any] = {}
    for entry in config["layers"]:
        name = entry["name"]
        if entry["class_name"] == "InputLayer":
            tensors[(name, 0, 0)] = _input(entry["config"])
            continue
        if entry["class_name"] in ("Functional", "Sequential", "Model"):
            raise ModelError(f"from_keras3: '{name}' is a nested model; flatten it first.")
        layer = _layer(entry)
        for index, node in enumerate(entry["inbound_nodes"]):
            out = layer(*_history(node["args"], tensors), **_history(node["kwargs"], tensors))
            for position, tensor in enumerate(out if isinstance(out, (list, tuple)) else [out]):
                tensors[(name, index, position)] = tensor
    return tf_keras.Model(_ends(config["input_layers"], tensors), _ends(config["output_layers"], tensors),
                          name=model.name)


def _probe(model) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    batch = []
    for spec in model.inputs:
        shape = (2, *[d or 4 for d in spec.shape[1:]])
        dtype = np.dtype(getattr(spec.dtype, "name", spec.dtype))
        batch.append(rng.integers(0, 2, shape).astype(dtype) if dtype.kind in "iu"
                     else rng.standard_normal(shape).astype(dtype))
    return batch


def _same(a, b, where: str, atol: float) -> None:
    inputs = _probe(a)

    def run(m) -> list[np.ndarray]:
        out = m.predict(inputs, verbose=0)
        return [np.asarray(o) for o in (out if isinstance(out, list) else [out])]

    diff = max(float(np.max(np.abs(x - y))) for x, y in zip(run(a), run(b)))
    if diff > atol:
        raise ModelError(f"{where}: the converted model's outputs differ by {diff:.3g} (> {atol:g}); "
                         "a layer did not convert faithfully.")


def from_keras3(model, *, atol: float = 1e-5) -> tf_keras.Model:
    """A tf_keras copy of Keras 3 ``model`` (architecture and weights), checked on a batch."""
    keras = _keras3()
    if not isinstance(model, keras.Model):
        raise ModelError(f"from_keras3: expected a Keras 3 model, got {type(model).__module__}."
                         f"{type(model).__name__}.")
    converted = _rebuild(model)
    for layer in model.layers:
        converted.get_layer(layer.name).set_weights(layer.get_weights())
    _same(model, converted, "from_keras3", atol)
    return converted


def to_keras3(model: tf_keras.Model, *, atol: float = 1e-5):
    """A Keras 3 copy of tf_keras ``model``, through HDF5, checked on a batch."""
    keras = _keras3()
    if not isinstance(model, tf_keras.Model):
        raise ModelError(f"to_keras3: expected a tf_keras model, got {type(model).__name__}.")
    import h5py

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.h5"
        model.save(path)
        with h5py.File(path, "r+") as h5:  # settings Keras 3 dropped (LSTM time_major) go
            config = _translate(json.loads(h5.attrs["model_config"]), keras)
            h5.attrs["model_config"] = json.dumps(config)
        converted = keras.models.load_model(path, compile=False)
    _same(model, converted, "to_keras3", atol)
    return converted
