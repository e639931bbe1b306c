"""Loading model files without running code from them, and with errors that say what is wrong.

tf_keras refuses a serialized Python ``lambda`` only in ``.keras`` files; from ``.h5``
files and SavedModels it unmarshals the bytecode and runs it while rebuilding the
model.  So every file is inspected before anything is deserialized: its stored config
(``config.json``, the HDF5 ``model_config`` attribute, ``keras_metadata.pb``) is read as
data, and a Keras 3 file, a layer that carries bytecode or a truncated file is refused
with one line naming the file, what is wrong and how to fix it.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import h5py

from . import checks
from .backend import keras, tf
from .errors import ConfigError, ModelError

_FORMATS = {".keras": "keras", ".h5": "h5", ".hdf5": "h5", ".tflite": "tflite"}
_OPT_IN = ("if you trust the file, pass --unsafe to kerasprune bench or safe_mode=False to "
          "kerasprune.load_model")
_VERSION_SOURCE = {"keras": "its metadata.json", "h5": "its HDF5 attributes",
                   "savedmodel": "its keras_metadata.pb"}
_TFLITE_FIX = "convert the model again (kerasprune.to_tflite) or copy the whole file"


def check_file(path: str | os.PathLike, *, safe_mode: bool = True) -> str:
    """The file's format (keras, h5, savedmodel, tflite) if it can be loaded, else a ModelError.

    Reads the stored config as data only, so a refused file has run nothing.  With
    ``safe_mode`` a layer whose loading would run code from the file is refused: serialized
    bytecode (a ``Lambda``: tf_keras stores any Python function given to one as bytecode,
    named or not; an RNN cell wrapper's function), a ``Lambda`` function that is not
    registered with Keras, or any object tf_keras would import from a module outside Keras,
    TensorFlow, kerasprune and tfmot.  Registered custom layers and functions are fine.
    """
    path = checks.path(path, "path")
    fmt = _format(path)
    if fmt == "tflite":
        return fmt  # holds no Python code; read_tflite checks the bytes when they are read
    configs, version = _CONFIG_READERS[fmt](path)
    if version and version.split(".")[0].isdigit() and int(version.split(".")[0]) >= 3:
        raise ModelError(
            f"{path} was saved by Keras {version} (keras_version {version} in "
            f"{_VERSION_SOURCE[fmt]}); kerasprune works on tf_keras (Keras 2) models: rebuild "
            "the model with `import tf_keras as keras` (or `from kerasprune.backend import "
            "keras`) and save it again, or export it from Keras 3 with model.export(DIR) and "
            "bench that SavedModel.")
    carriers: dict[str, str] = {}  # each layer's first finding (a Lambda's function is one)
    for owner, kind in (found for c in configs for found in _code_carriers(c)):
        carriers.setdefault(owner, kind)
    if safe_mode and carriers:
        layers = f"layer {next(iter(carriers))} holds" if len(carriers) == 1 else \
            f"layers {', '.join(carriers)} hold"
        kinds = "; ".join(dict.fromkeys(carriers.values()))
        raise ModelError(
            f"{path}: {layers} code that loading would run ({kinds}), so it is refused in safe "
            f"mode; {_OPT_IN} (or replace it by a custom layer or function registered with "
            "keras.utils.register_keras_serializable).")
    return fmt


#: what tf_keras and TensorFlow raise on a truncated, corrupt or foreign file (a short
#: variables shard ends in IndexError, a missing one in an OpError)
_UNREADABLE = (OSError, ValueError, TypeError, KeyError, EOFError, IndexError, RuntimeError,
               zipfile.BadZipFile, tf.errors.OpError)


def load_model(path: str | os.PathLike, *, safe_mode: bool = True,
               compile: bool = False) -> keras.Model:
    """A tf_keras model from a ``.keras``/``.h5`` file or a SavedModel, safely by default.

    The file is checked first (:func:`check_file`); ``safe_mode=False`` lets layers with
    serialized Python code load, and run that code.  What tf_keras still cannot read
    (a corrupt weights member, an unregistered custom layer) becomes one ModelError line.
    """
    path = checks.path(path, "path")
    fmt = check_file(path, safe_mode=safe_mode)
    if fmt == "tflite":
        raise ModelError(f"{path} is a .tflite file, not a Keras model; time it with "
                         "kerasprune bench or run it with kerasprune.export.tflite.interpreter.")
    if fmt == "savedmodel" and not (path / "keras_metadata.pb").is_file():
        raise ModelError(
            f"{path} is a SavedModel without keras_metadata.pb (written by tf.saved_model.save "
            "or Keras 3's model.export), so it holds TensorFlow signatures but no Keras model; "
            "load it with tf.saved_model.load, bench it as it is, or save the Keras model with "
            "tf_keras model.save.")
    try:
        return keras.models.load_model(path, compile=compile, safe_mode=safe_mode)
    except _UNREADABLE as exc:
        stored = json.dumps(_CONFIG_READERS[fmt](path)[0], default=str)
        if "QuantizeWrapper" in stored:
            fix = ("save kerasprune.quantization.bake(model) instead: plain layers with the weights "
                   "on the grid, which export the same file" if "WeightBits" in stored else
                   "save it as .h5 and load it inside tfmot.quantization.keras.quantize_scope(), "
                   "or export it with kerasprune.to_tflite before saving")
            raise ModelError(f"{path} holds a quantization-aware model (tfmot's QuantizeWrapperV2 "
                             f"layers), which tf_keras does not load from it ({first_line(exc)}); "
                             f"{fix}.") from exc
        raise ModelError(f"{path}: tf_keras cannot load it ({first_line(exc)}); register custom "
                         "layers with keras.utils.register_keras_serializable before loading, "
                         "and copy or save a truncated or corrupt file again.") from exc


def load_saved_model(path: str | os.PathLike, *, safe_mode: bool = True):
    """The TensorFlow object of a SavedModel (its signatures), after :func:`check_file`.

    ``tf.saved_model.load`` runs only the traced graph, not a Lambda's Python code, but a
    SavedModel that carries such code is refused in safe mode all the same, like the other
    loaders, so one file gets one answer everywhere.
    """
    path = checks.path(path, "path")
    if check_file(path, safe_mode=safe_mode) != "savedmodel":
        raise ConfigError(f"{path} is not a SavedModel directory (no saved_model.pb in it).")
    try:
        return tf.saved_model.load(str(path))
    except _UNREADABLE as exc:
        raise ModelError(f"{path}: TensorFlow cannot load this SavedModel ({first_line(exc)}); "
                         "if it is truncated or corrupt, copy or export it again.") from exc


def read_tflite(path: str | os.PathLike) -> bytes:
    """The bytes of a ``.tflite`` file, if they start like a TFLite flatbuffer.

    A flatbuffer starts with the offset of its root table and the ``TFL3`` identifier, so
    another kind of file is refused here rather than by the interpreter (which verifies
    the rest, see :meth:`kerasprune.benchmark.Artifact.input_spec`).
    """
    path = checks.path(path, "path")
    content = path.read_bytes()
    if content[4:8] != b"TFL3":
        what = _size(path, "no TFL3 identifier at byte 4")
        raise ModelError(f"{path} is not a TFLite flatbuffer ({what}); {_TFLITE_FIX}.")
    if int.from_bytes(content[:4], "little") >= len(content):
        what = _size(path, "its root table lies beyond the end")
        raise ModelError(f"{path} is a truncated TFLite flatbuffer ({what}); {_TFLITE_FIX}.")
    return content


def _format(path: Path) -> str:
    if not path.exists():
        raise ConfigError(f"{path} does not exist; give a .keras, .h5 or .tflite file or a "
                          "SavedModel directory.")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ConfigError(f"{path} is a directory without saved_model.pb, so it is not a "
                              "SavedModel; point at the model file or the SavedModel.")
        return "savedmodel"
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"cannot tell what {path} is from its suffix '{path.suffix}'; "
                          f"supported: {', '.join(_FORMATS)} or a SavedModel directory.")
    return fmt


def _not_a(path: Path, kind: str, fix: str) -> ModelError:
    return ModelError(f"{path} is not {kind} ({_size(path, 'truncated, or another kind of file')}); "
                      f"{fix}.")


def _keras_zip(path: Path) -> tuple[list[dict], str | None]:
    """``config.json`` and the saving Keras version of a ``.keras`` zip."""
    if not zipfile.is_zipfile(path):
        raise _not_a(path, "a valid .keras zip", "it is an HDF5 file: rename it to .h5"
                     if h5py.is_hdf5(path) else
                     "save it again with model.save('model.keras') or copy the whole file")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            config = json.loads(archive.read("config.json")) if "config.json" in names else None
            metadata = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ModelError(f"{path} is a corrupt .keras zip ({first_line(exc)}); save it again "
                         "or copy the whole file.") from exc
    if config is None:
        raise ModelError(f"{path} is a zip without config.json, so not a Keras model; save the "
                         "model with model.save('model.keras').")
    return [config], metadata.get("keras_version")


def _h5_file(path: Path) -> tuple[list[dict], str | None]:
    """The ``model_config`` attribute and saving Keras version of an HDF5 model file."""
    if not h5py.is_hdf5(path):
        raise _not_a(path, "an HDF5 file", "it is a zip: rename it to .keras"
                     if zipfile.is_zipfile(path) else
                     "save the model again with model.save('model.h5') or copy the whole file")
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: f.attrs[k] for k in ("model_config", "keras_version") if k in f.attrs}
    except OSError as exc:
        what = "truncated" if "truncated" in str(exc) else "corrupt"
        raise ModelError(f"{path} is a {what} HDF5 file ({first_line(exc)}); copy the whole "
                         "file or save the model again.") from exc
    if "model_config" not in attrs:
        raise ModelError(f"{path} holds weights but no model config (written by "
                         "model.save_weights?); load it into the built model with "
                         "model.load_weights, or save the whole model with model.save.")
    version = attrs.get("keras_version")
    try:
        config = json.loads(_text(attrs["model_config"]))
    except ValueError as exc:
        raise ModelError(f"{path} has a corrupt model_config attribute ({first_line(exc)}); "
                         "save the model again.") from exc
    return [config], None if version is None else _text(version)


def _saved_model(path: Path) -> tuple[list[dict], str | None]:
    """The Keras metadata of a SavedModel's objects (none without ``keras_metadata.pb``)."""
    from google.protobuf.message import DecodeError

    metadata_file = path / "keras_metadata.pb"
    if not metadata_file.is_file():
        return [], None
    try:
        nodes = keras.protobuf.saved_metadata_pb2.SavedMetadata.FromString(
            metadata_file.read_bytes()).nodes
        configs = [json.loads(node.metadata) for node in nodes]
    except (DecodeError, ValueError) as exc:
        raise ModelError(f"{metadata_file} is corrupt ({first_line(exc)}); save the model "
                         "again with model.save.") from exc
    return configs, next((c["keras_version"] for c in configs if "keras_version" in c), None)


_CONFIG_READERS = {"keras": _keras_zip, "h5": _h5_file, "savedmodel": _saved_model}


#: packages tf_keras may import a serialized object's class or function from in safe mode:
#: Keras, TensorFlow, kerasprune and the tfmot wrappers it builds on
_TRUSTED_PACKAGES = ("keras", "tf_keras", "tensorflow", "kerasprune", "tensorflow_model_optimization")


def _code_carriers(config: object, owner: str = "the model") -> list[tuple[str, str]]:
    """``("'name' (Class)", what it runs)`` for each layer in ``config`` that would run code.

    tf_keras runs code from a file in two ways: it unmarshals bytecode (a function whose
    ``*_type`` is ``"lambda"``: ``Lambda``'s function, output shape and mask, cell wrappers'
    functions; an object serialized as ``"__lambda__"``), and it imports a serialized object's
    ``module`` to take the class or function named there (a ``Lambda`` whose ``*_type`` is
    ``"function"`` calls it while the model is rebuilt; a class's ``from_config`` runs).
    """
    if isinstance(config, list):
        return [found for item in config for found in _code_carriers(item, owner)]
    if not isinstance(config, dict):
        return []
    inner = config.get("config")
    if "class_name" in config and isinstance(inner, dict) and "name" in inner:
        owner = f"'{inner['name']}' ({config['class_name']})"
    code = _code_in(config)
    return ([(owner, code)] if code else []) + [
        found for value in config.values() for found in _code_carriers(value, owner)]


def _code_in(config: dict) -> str | None:
    """What code loading ``config`` itself (not the objects nested in it) would run, if any."""
    kinds = {key[:-len("_type")]: value for key, value in config.items() if key.endswith("_type")}
    if config.get("class_name") == "__lambda__" or "lambda" in kinds.values():
        return "serialized Python bytecode"
    function = next((config.get(key) for key, kind in kinds.items()
                     if kind == "function" and not _registered(config.get(key))), None)
    if function is not None:
        return f"function {_reference(function)}, not registered with Keras"
    if "class_name" in config and "module" in config and not _registered(config) and \
            not _trusted(config):
        return f"{_reference(config)}, from outside {', '.join(_TRUSTED_PACKAGES)}"
    return None


def _name(config: dict) -> object:
    """The name tf_keras looks up in a serialized object's module."""
    if config.get("class_name") == "function":
        return config.get("config")
    return config.get("spec_name", config.get("class_name"))


def _registered(value: object) -> bool:
    """Whether tf_keras finds ``value`` (a name or serialized object) among the objects
    registered with Keras (or in a custom object scope), and so imports nothing for it."""
    if isinstance(value, dict):
        value = _name(value) if value.get("class_name") == "function" else \
            value.get("registered_name", value.get("class_name"))
    return isinstance(value, str) and keras.utils.get_registered_object(value) is not None


def _trusted(config: dict) -> bool:
    """Whether a serialized object names a plain attribute of a trusted package's module (a
    dotted name would reach through it, e.g. to an ``os`` the module imported)."""
    module, name = config["module"], _name(config)
    return module is None or (isinstance(module, str) and isinstance(name, str) and
                              name.isidentifier() and module.split(".")[0] in _TRUSTED_PACKAGES)


def _reference(value: object) -> str:
    """``module.name`` of a serialized object, or a bare name."""
    if isinstance(value, dict):
        return f"{value.get('module')}.{_name(value)}"
    return repr(value)


def _size(path: Path, otherwise: str) -> str:
    """The file's size and what is wrong with its content, or just "empty"."""
    size = path.stat().st_size
    return "empty" if not size else f"{size} bytes: {otherwise}"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def first_line(exc: BaseException, limit: int = 300) -> str:
    """What went wrong, in one line: tf_keras puts the cause of a failed deserialization
    ("Unknown layer ...") on an "Exception encountered:" line after a dump of the config."""
    lines = str(exc).strip().splitlines() or [""]
    cause = "Exception encountered:"
    line = next((x[len(cause):].strip() for x in lines if x.startswith(cause)), lines[0])
    line = line if len(line) <= limit else line[:limit] + "..."
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__
