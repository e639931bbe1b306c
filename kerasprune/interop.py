"""Keras 3 models in and out: tfmot and kerasprune work on tf_keras (Keras 2).

:func:`from_keras3` rebuilds a Keras 3 Sequential or Functional model of standard layers as
a tf_keras model, layer by layer from its config (Keras 3 writes nested objects, dtype
policies and graph edges in its own format; they are translated here), and copies the
weights.  :func:`to_keras3` goes back through the HDF5 format, which Keras 3 still reads.
Both run the two models on the same random batch and refuse a result whose outputs differ.
Keras 3 is imported only when these are called.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .backend import keras as tf_keras, require_graph_model, tf
from .errors import KerasPruneError, ModelError
from .data import FREE_SIZE, example_batch
from .loading import first_line

_BASE_KWARGS = {"name", "trainable", "dtype", "input_shape", "batch_input_shape", "batch_size",
                "weights", "activity_regularizer", "autocast", "input_dim"}
#: settings the two Kerases name differently: {class: {Keras 3 name: tf_keras name}}
_RENAMED = {"LeakyReLU": {"negative_slope": "alpha"}}
#: tf_keras settings not of what a layer computes, dropped where Keras 3 has no such setting:
#: how it draws in training (kerasprune.random_state), and the input shapes MultiHeadAttention
#: builds its weights for when loaded (Keras 3 builds it when the graph calls it)
_NOT_COMPUTED = {"rng_type", "query_shape", "key_shape", "value_shape"}
#: Keras 3 operations on two tensors (``a + b``) that a tf_keras merge layer of the same name computes
_MERGES = {"Add", "Subtract", "Multiply"}
#: what tf_keras and Keras 3 raise on a config or graph they cannot build
_UNBUILDABLE = (TypeError, ValueError, KeyError)


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


def _plain(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples become lists), so settings compare across formats."""
    return json.loads(json.dumps(value, default=str))


def _defaults(cls: type | None, config: dict) -> dict:
    """The config ``cls`` gives built from ``config``'s required settings alone: its defaults,
    as resolved (a ``data_format`` of None reads as the image data format)."""
    if cls is None:
        return {}
    parameters = inspect.signature(cls.__init__).parameters.values()
    required = {p.name: config[p.name] for p in parameters
                if p.default is p.empty and p.name in config}
    try:
        return _plain(cls(**required).get_config())
    except _UNBUILDABLE:
        return {}  # then no setting counts as a default, and each is named


def _translate(value: Any, source, target, owner: str = "the model") -> Any:
    """Serialized objects from ``source`` (tf_keras or Keras 3) in the form ``target`` reads:
    dtype policies become their name, renamed settings take the target's name, and settings
    only ``source`` has go while at that class's default; one set otherwise is a ModelError
    naming ``owner``, the layer it belongs to."""
    if isinstance(value, dict) and "class_name" in value and "config" in value:
        kind, config = value["class_name"], value["config"]
        if kind in ("DTypePolicy", "FloatDTypePolicy"):
            return config["name"]
        if isinstance(config, dict) and "name" in config:
            owner = f"layer '{config['name']}' ({kind})"
        config = _translate(config, source, target, owner)
        cls = _class_in(target, kind)
        if cls is not None and isinstance(config, dict):
            renamed = _RENAMED.get(kind, {})
            renamed = renamed if target is tf_keras else {v: k for k, v in renamed.items()}
            config = {renamed.get(k, k): v for k, v in config.items()}
            config = _settings(config, _accepted(cls), _class_in(source, kind), target, owner)
        return {**{k: _translate(v, source, target, owner) for k, v in value.items() if k != "config"},
                "config": config}
    if isinstance(value, dict):
        return {k: _translate(v, source, target, owner) for k, v in value.items()}
    if isinstance(value, list):
        return [_translate(v, source, target, owner) for v in value]
    return value


def _settings(config: dict, accepted: set[str], source_cls: type | None, target, owner: str) -> dict:
    """``config`` without the settings the target class lacks, if each is at its default."""
    extra = {k: v for k, v in config.items() if k not in accepted and k not in _NOT_COMPUTED}
    defaults = _defaults(source_cls, config) if extra else {}
    meaningful = sorted(k for k, v in extra.items() if k not in defaults or _plain(v) != defaults[k])
    if meaningful:
        where, other = ("from_keras3", "tf_keras") if target is tf_keras else ("to_keras3", "Keras 3")
        raise ModelError(f"{where}: {owner} sets {', '.join(meaningful)}, which {other} does not "
                         "have; convert the model with them at their defaults.")
    return {k: v for k, v in config.items() if k in accepted}


@contextlib.contextmanager
def _rebuilding(where: str, what: str) -> Iterator[None]:
    """What tf_keras or Keras 3 raise while ``what`` (a layer, the model) is rebuilt, as a
    ModelError naming it."""
    try:
        yield
    except KerasPruneError:
        raise
    except _UNBUILDABLE as exc:
        raise ModelError(f"{where}: {what} cannot be rebuilt ({first_line(exc)}); rebuild it from "
                         "standard layers both Kerases have.") from None


def _layer(entry: dict, keras3) -> tf_keras.layers.Layer:
    name, kind = entry["config"].get("name", "?"), entry["class_name"]
    cls = getattr(tf_keras.layers, kind, None)
    if cls is None or entry.get("registered_name") not in (None, kind):
        raise ModelError(f"from_keras3: layer '{name}' ({kind}) has no tf_keras equivalent; "
                         "only standard Keras layers convert (rebuild it from tf_keras layers).")
    config = _translate({"class_name": kind, "config": entry["config"]}, keras3, tf_keras)["config"]
    if kind == "MultiHeadAttention":  # tf_keras builds it for these shapes; Keras 3 keeps them apart
        shapes = (entry.get("build_config") or {}).get("shapes_dict", {})
        value = shapes.get("value_shape")
        config.update(query_shape=shapes.get("query_shape"), value_shape=value,
                      key_shape=shapes.get("key_shape", value))
    with _rebuilding("from_keras3", f"layer '{name}' ({kind})"):
        return cls.from_config(config)


def _operation(entry: dict, node: dict) -> tuple[tf_keras.layers.Layer, list]:
    """The tf_keras merge layer that computes a Keras 3 operation node (``a + b``), with the
    node's arguments as the merge layer's one list, or a ModelError naming the operation."""
    name, kind = entry["name"], entry["class_name"]
    args = node["args"]
    tensors = all(isinstance(a, dict) and a.get("class_name") == "__keras_tensor__" for a in args)
    if kind not in _MERGES or len(args) != 2 or not tensors or node["kwargs"]:
        raise ModelError(
            f"from_keras3: '{name}' is a Keras 3 operation ({kind}, from keras.ops or an operator "
            "on tensors) that no tf_keras layer computes; only +, - and * of two tensors convert: "
            "express the rest with standard layers (e.g. keras.layers.Concatenate, Reshape, Dot).")
    return getattr(tf_keras.layers, kind)(name=name), [args]


def _input(config: dict) -> Any:
    return tf_keras.Input(batch_shape=tuple(config["batch_shape"]), dtype=config.get("dtype"),
                          name=config["name"])


def _history(item: Any, tensors: dict) -> Any:
    """Node arguments with Keras 3's ``__keras_tensor__`` records replaced by tf_keras tensors
    (a KeyError while a record's layer has not been called yet)."""
    if isinstance(item, dict) and item.get("class_name") == "__keras_tensor__":
        return tensors[tuple(item["config"]["keras_history"])]
    if isinstance(item, (list, tuple)):
        return type(item)(_history(i, tensors) for i in item)
    if isinstance(item, dict):
        return {k: _history(v, tensors) for k, v in item.items()}
    return item


def _ends(spec: list) -> list[tuple]:
    """The ``(layer, node, tensor)`` keys of a Functional config's inputs or outputs: one
    tensor or a flat list of them, as a tf_keras model takes and gives."""
    spec = [spec] if isinstance(spec, list) and spec and isinstance(spec[0], str) else spec
    if not isinstance(spec, list) or not all(isinstance(s, list) and s and isinstance(s[0], str)
                                             for s in spec):
        raise ModelError(f"from_keras3: the model takes or gives a dict or nested structure of "
                         f"tensors ({spec}); rebuild it with keras.Model(inputs, outputs) of one "
                         "tensor or a flat list each.")
    return [tuple(s) for s in spec]


def _rebuild(model, keras3) -> tf_keras.Model:
    config = model.get_config()
    if type(model).__name__ == "Sequential":
        layers = config["layers"]
        first = layers[0] if layers and layers[0]["class_name"] == "InputLayer" else None
        if first is None:
            raise ModelError(f"from_keras3: Sequential model '{model.name}' has no Input; build it "
                             "with keras.Input(shape) first.")
        return tf_keras.Sequential([_input(first["config"]), *(_layer(e, keras3) for e in layers[1:])],
                                   name=model.name)
    inputs, outputs = _ends(config["input_layers"]), _ends(config["output_layers"])
    tensors: dict[tuple, Any] = {}
    waiting = []  # (entry, node index, layer, args, kwargs) of each call in the graph
    for entry in config["layers"]:
        name = entry["name"]
        if entry["class_name"] == "InputLayer":
            tensors[(name, 0, 0)] = _input(entry["config"])
        elif entry["class_name"] in ("Functional", "Sequential", "Model"):
            raise ModelError(f"from_keras3: '{name}' is a nested model; flatten it first.")
        else:
            operation = str(entry.get("module")).startswith("keras.src.ops")
            layer = None if operation else _layer(entry, keras3)
            for index, node in enumerate(entry["inbound_nodes"]):
                call = _operation(entry, node) if operation else (layer, node["args"])
                waiting.append((entry, index, *call, node["kwargs"]))
    while waiting:  # a shared layer's later calls wait for the layers that feed them
        blocked = [item for item in waiting if not _call(*item, tensors)]
        if len(blocked) == len(waiting):
            entry = blocked[0][0]
            raise ModelError(f"from_keras3: layer '{entry['name']}' ({entry['class_name']}) takes a "
                             "tensor that no layer of the model makes; rebuild the model from "
                             "keras.Input tensors.")
        waiting = blocked
    return tf_keras.Model([tensors[k] for k in inputs], [tensors[k] for k in outputs], name=model.name)


def _call(entry: dict, index: int, layer: tf_keras.layers.Layer, args: list, kwargs: dict,
          tensors: dict) -> bool:
    """Call ``layer`` on a Keras 3 node's tensors and record its outputs, if they are all made."""
    name = entry["name"]
    try:
        args, kwargs = _history(args, tensors), _history(kwargs, tensors)
    except KeyError:
        return False
    with _rebuilding("from_keras3", f"layer '{name}' ({entry['class_name']})"):
        out = layer(*args, **kwargs)
    for position, tensor in enumerate(out if isinstance(out, (list, tuple)) else [out]):
        tensors[(name, index, position)] = tensor
    return True


def _same(a, b, where: str, atol: float) -> None:
    inputs = example_batch(a)

    def run(m) -> list[np.ndarray]:
        try:
            out = m.predict(inputs, verbose=0)
        except (*_UNBUILDABLE, tf.errors.OpError) as exc:
            raise ModelError(f"{where}: model '{m.name}' does not run on a check batch of shape(s) "
                             f"{[x.shape for x in inputs]} ({first_line(exc)}); its free (None) "
                             f"dimensions are set to {FREE_SIZE} there: give the model a fixed "
                             "input shape, e.g. keras.Input((height, width, channels)).") from None
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
    if type(model).__name__ not in ("Sequential", "Functional"):
        raise ModelError(f"from_keras3: model '{model.name}' is subclassed ({type(model).__name__}), "
                         "so its config holds no layers and connections to rebuild; build it with "
                         "keras.Input and keras.Model(inputs, outputs) or keras.Sequential.")
    converted = _rebuild(model, keras)
    for layer in model.layers:
        with _rebuilding("from_keras3", f"layer '{layer.name}' ({type(layer).__name__})"):
            converted.get_layer(layer.name).set_weights(layer.get_weights())
    _same(model, converted, "from_keras3", atol)
    return converted


def _layers(model: tf_keras.Model) -> Iterator[tf_keras.layers.Layer]:
    """The layers of ``model`` and of the models nested in it."""
    for layer in model.layers:
        yield from _layers(layer) if isinstance(layer, tf_keras.Model) else [layer]


def _check_convertible(layer: tf_keras.layers.Layer, keras3) -> None:
    """A ModelError for a layer Keras 3 cannot rebuild from its HDF5 config."""
    name, kind = layer.name, type(layer).__name__
    if tf_keras.utils.get_registered_name(type(layer)) == "kerasprune>PruningWrapper":
        raise ModelError(f"to_keras3: layer '{name}' is wrapped for pruning (PruningWrapper), which "
                         "Keras 3 does not have; convert the stripped model: "
                         "to_keras3(kerasprune.strip(model)).")
    if isinstance(layer, tf_keras.layers.Lambda):
        raise ModelError(f"to_keras3: layer '{name}' (Lambda) holds Python code, which Keras 3 does "
                         "not load from a file in safe mode; replace it by standard layers.")
    if getattr(tf_keras.layers, kind, None) is not type(layer) or _class_in(keras3, kind) is None:
        raise ModelError(f"to_keras3: layer '{name}' ({kind}) has no Keras 3 equivalent; only "
                         "standard layers both Kerases have convert (rebuild it from those).")


def _is_reference(value: Any) -> bool:
    """Whether a tf_keras HDF5 node argument names a tensor: ``[layer, node, tensor]``."""
    return isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)


def _keras3_node(node: list) -> list | dict:
    """A tf_keras HDF5 node, in Keras 3's own form if the call passes a tensor by keyword
    (MultiHeadAttention's ``value``): Keras 3 reads such keywords of the tf_keras form as
    plain lists, and the layer would build without their shapes."""
    if len(node) != 1 or len(node[0]) != 4 or not any(map(_is_reference, node[0][3].values())):
        return node

    def record(reference: list) -> dict:  # Keras 3 swaps it for the tensor its history names
        return {"class_name": "__keras_tensor__",
                "config": {"shape": [], "dtype": "float32", "keras_history": reference}}

    (*reference, kwargs), = node
    return {"args": [record(reference)],
            "kwargs": {k: record(v) if _is_reference(v) else v for k, v in kwargs.items()}}


def to_keras3(model: tf_keras.Model, *, atol: float = 1e-5):
    """A Keras 3 copy of tf_keras ``model``, through HDF5, checked on a batch."""
    keras = _keras3()
    if not isinstance(model, tf_keras.Model):
        raise ModelError(f"to_keras3: expected a tf_keras model, got {type(model).__name__}.")
    require_graph_model(model, "to_keras3", "conversion")
    for layer in _layers(model):
        _check_convertible(layer, keras)
    import h5py

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.h5"
        model.save(path)
        with h5py.File(path, "r+") as h5:
            config = _translate(json.loads(h5.attrs["model_config"]), tf_keras, keras)
            for layer in config["config"].get("layers", []):
                if "inbound_nodes" in layer:  # a Functional's
                    layer["inbound_nodes"] = [_keras3_node(n) for n in layer["inbound_nodes"]]
            h5.attrs["model_config"] = json.dumps(config)
        with _rebuilding("to_keras3", f"model '{model.name}'"):
            converted = keras.models.load_model(path, compile=False)
    _same(model, converted, "to_keras3", atol)
    return converted
