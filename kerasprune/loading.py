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
    ``safe_mode`` a layer holding serialized bytecode is refused: a ``Lambda`` layer (tf_keras
    stores any Python function given to one as bytecode, named or not) or an RNN cell
    wrapper's function.  Registered custom layers and functions are stored by name: fine.
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
    carriers = list(dict.fromkeys(name for c in configs for name in _code_carriers(c)))
    if safe_mode and carriers:
        layers = f"layer {carriers[0]} holds" if len(carriers) == 1 else \
            f"layers {', '.join(carriers)} hold"
        raise ModelError(
            f"{path}: {layers} serialized Python code that loading would run, so it is refused "
            f"in safe mode; {_OPT_IN} (or replace the Lambda by a custom layer registered with "
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
                             f"layers), which tf_keras does not load from it ({_first_line(exc)}); "
                             f"{fix}.") from exc
        raise ModelError(f"{path}: tf_keras cannot load it ({_first_line(exc)}); register custom "
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
        raise ModelError(f"{path}: TensorFlow cannot load this SavedModel ({_first_line(exc)}); "
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
        raise ModelError(f"{path} is a corrupt .keras zip ({_first_line(exc)}); save it again "
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
        raise ModelError(f"{path} is a {what} HDF5 file ({_first_line(exc)}); copy the whole "
                         "file or save the model again.") from exc
    if "model_config" not in attrs:
        raise ModelError(f"{path} holds weights but no model config (written by "
                         "model.save_weights?); load it into the built model with "
                         "model.load_weights, or save the whole model with model.save.")
    version = attrs.get("keras_version")
    try:
        config = json.loads(_text(attrs["model_config"]))
    except ValueError as exc:
        raise ModelError(f"{path} has a corrupt model_config attribute ({_first_line(exc)}); "
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
        raise ModelError(f"{metadata_file} is corrupt ({_first_line(exc)}); save the model "
                         "again with model.save.") from exc
    return configs, next((c["keras_version"] for c in configs if "keras_version" in c), None)


_CONFIG_READERS = {"keras": _keras_zip, "h5": _h5_file, "savedmodel": _saved_model}


def _code_carriers(config: object, owner: str = "the model") -> list[str]:
    """``'name' (Class)`` of each layer in ``config`` holding bytecode tf_keras would load.

    tf_keras unmarshals code in three places: a function whose ``*_type`` is ``"lambda"``
    (``Lambda``'s function, output shape and mask, cell wrappers' functions) and an
    object serialized as ``"__lambda__"``.
    """
    if isinstance(config, list):
        return [name for item in config for name in _code_carriers(item, owner)]
    if not isinstance(config, dict):
        return []
    inner = config.get("config")
    if "class_name" in config and isinstance(inner, dict) and "name" in inner:
        owner = f"'{inner['name']}' ({config['class_name']})"
    found = [owner] if config.get("class_name") == "__lambda__" or any(
        key.endswith("_type") and value == "lambda" for key, value in config.items()) else []
    return found + [name for value in config.values() for name in _code_carriers(value, owner)]


def _size(path: Path, otherwise: str) -> str:
    """The file's size and what is wrong with its content, or just "empty"."""
    size = path.stat().st_size
    return "empty" if not size else f"{size} bytes: {otherwise}"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """What went wrong, in one line: tf_keras puts the cause of a failed deserialization
    ("Unknown layer ...") on an "Exception encountered:" line after a dump of the config."""
    lines = str(exc).strip().splitlines() or [""]
    cause = "Exception encountered:"
    line = next((x[len(cause):].strip() for x in lines if x.startswith(cause)), lines[0])
    line = line if len(line) <= limit else line[:limit] + "..."
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__
