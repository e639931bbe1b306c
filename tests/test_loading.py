"""Loading model files: no code from the file runs unless asked, and bad files get one line."""
from __future__ import annotations

import json
import operator
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile

import h5py
import numpy as np
import pytest

from kerasprune.backend import keras
from kerasprune.errors import ModelError
import kerasprune
from kerasprune import cli, export, loading, metrics

FORMATS = ["model.keras", "model.h5", "savedmodel"]
QUICK = ["--target", "tflite@1", "--rounds", "2", "--block-seconds", "0.005",
         "--throughput-batch", "0"]


def bench(path, *flags) -> int:
    return cli.main(["bench", str(path), *QUICK, *flags])


def one_line_error(capsys) -> str:
    """The CLI's error output, checked to be a single kerasprune line without a traceback."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("kerasprune: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@keras.utils.register_keras_serializable("kerasprune_tests")
class Scale(keras.layers.Layer):
    """A registered custom layer: stored by name, so it is not code in the file."""

    def __init__(self, factor: float = 2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def save_all(model: keras.Model, root) -> dict[str, str]:
    paths = {name: str(root / name) for name in FORMATS}
    for name, path in paths.items():
        model.save(path, **({"save_format": "tf"} if name == "savedmodel" else {}))
    return paths


@pytest.fixture(scope="module")
def lambda_files(tmp_path_factory):
    """One model with a Lambda whose code leaves a marker file each time it runs."""
    root = tmp_path_factory.mktemp("lambda")
    marker = root / "the-lambda-ran"
    inputs = keras.Input((4,))
    doubled = keras.layers.Lambda(
        lambda x, marker=str(marker): (open(marker, "a").close(), x * 2)[1], name="double")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(doubled))
    x = np.ones((1, 4), np.float32)
    return save_all(model, root), marker, x, model(x).numpy()


@pytest.fixture
def lambda_model(lambda_files, monkeypatch):
    """The Lambda files with the marker cleared, and tf_keras' bytecode loader watched."""
    from tf_keras.src.utils import generic_utils

    paths, marker, x, expected = lambda_files
    marker.unlink(missing_ok=True)  # building and saving the model ran the lambda
    unmarshalled = []
    real = generic_utils.func_load
    monkeypatch.setattr(generic_utils, "func_load",
                        lambda *a, **k: unmarshalled.append(a) or real(*a, **k))
    return paths, marker, unmarshalled, x, expected


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_loader_refuses_a_lambda_before_any_of_its_code_is_read(lambda_model, fmt):
    paths, marker, unmarshalled, _, _ = lambda_model
    with pytest.raises(ModelError, match=r"layer 'double' \(Lambda\) holds code that loading would "
                                         r"run \(serialized Python bytecode\).*--unsafe.*safe_mode=False"
                       ) as refused:
        loading.load_model(paths[fmt])
    assert paths[fmt] in str(refused.value)
    assert not marker.exists() and not unmarshalled  # not run, not even unmarshalled


@pytest.mark.parametrize("fmt", FORMATS)
def test_bench_refuses_a_lambda_in_one_line_that_says_how_to_opt_in(lambda_model, fmt, capsys):
    paths, marker, unmarshalled, _, _ = lambda_model
    assert bench(paths[fmt]) == 2
    err = one_line_error(capsys)
    assert paths[fmt] in err and "'double' (Lambda)" in err and "--unsafe" in err
    assert not marker.exists() and not unmarshalled


@pytest.mark.parametrize("fmt", FORMATS)
def test_opting_in_loads_the_lambda_and_runs_it(lambda_model, fmt):
    paths, marker, unmarshalled, x, expected = lambda_model
    model = loading.load_model(paths[fmt], safe_mode=False)
    np.testing.assert_allclose(model(x).numpy(), expected, rtol=1e-6)
    assert marker.exists() and unmarshalled  # the file's code ran: what safe mode prevents


@pytest.mark.parametrize("fmt", FORMATS)
def test_bench_unsafe_times_a_model_with_a_lambda(lambda_model, fmt, capsys):
    paths, *_ = lambda_model
    assert bench(paths[fmt], "--unsafe") == 0
    assert "## `tflite@1`" in capsys.readouterr().out


def test_registered_custom_layers_load_in_safe_mode(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(Scale(0.5, name="half")(inputs)))
    x = np.ones((1, 4), np.float32)
    for fmt, path in save_all(model, tmp_path).items():
        loaded = loading.load_model(path)
        assert type(loaded.get_layer("half")) is Scale, fmt
        np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6)


CALLS = []


def record_call(x):
    """A function a file names by module: tf_keras imports and calls it while rebuilding."""
    CALLS.append(x)
    return x


class RecordingModel:
    """A class a file names by module: tf_keras imports it and runs its from_config."""

    @classmethod
    def from_config(cls, config):
        CALLS.append(config)
        raise ValueError("not a model")


def rewritten(path, fmt: str, edit) -> str:
    """A copy of a saved model whose stored config ``edit`` changed, as a forged file would be."""
    out = path.with_name("forged." + fmt)
    if fmt == "h5":
        shutil.copy(path, out)
        with h5py.File(out, "r+") as f:
            f.attrs["model_config"] = json.dumps(edit(json.loads(f.attrs["model_config"])))
        return str(out)
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            content = source.read(name)
            target.writestr(name, json.dumps(edit(json.loads(content))) if name == "config.json"
                            else content)
    return str(out)


def named_function_lambda(config: dict) -> dict:
    """A Lambda whose function is not bytecode but a reference tf_keras imports and calls."""
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "Lambda":
            layer["config"]["function"] = {"module": __name__, "class_name": "function",
                                           "config": "record_call", "registered_name": "function"}
    return config


@pytest.fixture
def saved_neg(tmp_path):
    """A model with a Lambda of a built-in function (stored by name, not as bytecode)."""
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Lambda(operator.neg, name="neg")(inputs)))
    paths = {fmt: tmp_path / f"model.{fmt}" for fmt in ("keras", "h5")}
    for path in paths.values():
        model.save(path)
    CALLS.clear()
    return paths


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_a_lambda_naming_an_unregistered_function_is_refused_before_it_is_imported(saved_neg, fmt):
    path = rewritten(saved_neg[fmt], fmt, named_function_lambda)
    with pytest.raises(ModelError, match=rf"layer 'neg' \(Lambda\) holds code that loading would run "
                                         rf"\(function {__name__}.record_call, not registered with "
                                         r"Keras\).*--unsafe.*safe_mode=False"):
        loading.check_file(path)
    with pytest.raises(ModelError):
        loading.load_model(path)
    assert not CALLS


def test_opting_in_imports_and_runs_what_a_keras_file_names(saved_neg):
    lambda_file = rewritten(saved_neg["keras"], "keras", named_function_lambda)
    loading.load_model(lambda_file, safe_mode=False)
    assert CALLS  # the function ran while the model was rebuilt: what safe mode prevents


def test_an_object_from_a_module_outside_keras_is_refused_before_it_is_imported(tmp_path):
    def outside_class(config: dict) -> dict:
        return {**config, "module": __name__, "class_name": "RecordingModel", "registered_name": None}

    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="mlp").save(tmp_path / "mlp.keras")
    CALLS.clear()
    path = rewritten(tmp_path / "mlp.keras", "keras", outside_class)
    with pytest.raises(ModelError, match=rf"layer 'mlp' \(RecordingModel\) holds code that loading "
                                         rf"would run \({__name__}.RecordingModel, from outside keras, "
                                         r".*--unsafe"):
        loading.load_model(path)
    assert not CALLS
    with pytest.raises(ModelError):
        loading.load_model(path, safe_mode=False)
    assert CALLS  # opted in, tf_keras imported the class and ran its from_config


@pytest.fixture(scope="module")
def keras3_files(tmp_path_factory):
    """A .keras and an .h5 file written by Keras 3, in a process where tf.keras is Keras 3."""
    root = tmp_path_factory.mktemp("keras3")
    script = textwrap.dedent(f"""
        import keras
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        model.save({str(root / "k3.keras")!r})
        model.save({str(root / "k3.h5")!r})
    """)
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    out = subprocess.run([sys.executable, "-c", script], env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return [root / "k3.keras", root / "k3.h5"]


def test_keras3_files_are_named_as_keras3_by_the_loader_and_bench(keras3_files, capsys):
    for path in keras3_files:
        with pytest.raises(ModelError, match=r"saved by Keras 3\.[\d.]+ \(keras_version "
                                             r"3\.[\d.]+ in its .*tf_keras \(Keras 2\)"):
            loading.load_model(path)
        assert bench(path) == 2
        err = one_line_error(capsys)
        assert str(path) in err and "saved by Keras 3." in err and "batch_shape" not in err


def test_count_macs_names_a_keras3_model():
    import keras as keras3

    model = keras3.Sequential([keras3.Input((3,)), keras3.layers.Dense(2)])
    with pytest.raises(ModelError, match="count_macs: got a Keras 3 model") as refused:
        metrics.count_macs(model)
    assert "subclassed" not in str(refused.value)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """The bytes of one small model in every format, to break in different ways."""
    root = tmp_path_factory.mktemp("good")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    paths = save_all(model, root)
    model.save_weights(root / "weights.h5")
    with zipfile.ZipFile(paths["model.keras"]) as src, \
            zipfile.ZipFile(root / "cut_weights.keras", "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, data[: len(data) // 2] if info.filename.endswith(".h5") else data)
    files = {name: (root / name).read_bytes() for name in ("model.keras", "model.h5", "weights.h5",
                                                           "cut_weights.keras")}
    return {**files, "model.tflite": export.to_tflite(model).content,
            "savedmodel": paths["savedmodel"]}


def cut(name: str, keep: float):
    return lambda good: good[name][: int(len(good[name]) * keep)]


CORRUPT = {  # file name -> (its bytes, made from the good files; what the message says)
    "truncated.keras": (cut("model.keras", 0.5), "is not a valid .keras zip ("),
    "empty.keras": (lambda good: b"", "is not a valid .keras zip (empty)"),
    "hdf5.keras": (lambda good: good["model.h5"], "it is an HDF5 file: rename it to .h5"),
    "cut_weights.keras": (lambda good: good["cut_weights.keras"],
                          "tf_keras cannot load it (OSError: Unable to synchronously open file "
                          "(truncated file"),
    "truncated.h5": (cut("model.h5", 0.5), "is a truncated HDF5 file"),
    "text.h5": (lambda good: b"not a model", "is not an HDF5 file (11 bytes"),
    "zip.h5": (lambda good: good["model.keras"], "it is a zip: rename it to .keras"),
    "weights.h5": (lambda good: good["weights.h5"], "holds weights but no model config"),
    "empty.tflite": (lambda good: b"", "is not a TFLite flatbuffer (empty)"),
    "text.tflite": (lambda good: b"not a model at all", "no TFL3 identifier at byte 4"),
    "header.tflite": (cut("model.tflite", 0.01), "is a truncated TFLite flatbuffer"),
    "truncated.tflite": (cut("model.tflite", 0.97), "is a truncated or corrupt TFLite flatbuffer"),
}


@pytest.mark.parametrize("name", CORRUPT)
def test_bench_says_what_is_wrong_with_a_broken_file(good, tmp_path, capsys, name):
    make, says = CORRUPT[name]
    (tmp_path / name).write_bytes(make(good))
    assert bench(tmp_path / name) == 2
    err = one_line_error(capsys)
    assert str(tmp_path / name) in err and says in err


@pytest.mark.parametrize("name", [n for n in CORRUPT if not n.endswith(".tflite")])
def test_the_loader_says_what_is_wrong_with_a_broken_file(good, tmp_path, name):
    make, says = CORRUPT[name]
    (tmp_path / name).write_bytes(make(good))
    with pytest.raises(ModelError) as refused:
        loading.load_model(tmp_path / name)
    assert says in str(refused.value) and "\n" not in str(refused.value)


def test_a_file_that_is_not_a_flatbuffer_never_reaches_the_interpreter(tmp_path, monkeypatch,
                                                                       capsys):
    monkeypatch.setattr(export, "interpreter", lambda *a, **k: pytest.fail("interpreter used"))
    (tmp_path / "model.tflite").write_bytes(b"PK\x03\x04 a zip, say")
    with pytest.raises(ModelError, match="not a TFLite flatbuffer"):
        loading.read_tflite(tmp_path / "model.tflite")
    assert bench(tmp_path / "model.tflite") == 2
    assert "not a TFLite flatbuffer" in one_line_error(capsys)


def test_a_broken_savedmodel_is_named(good, tmp_path, capsys):
    broken = tmp_path / "savedmodel"
    shutil.copytree(good["savedmodel"], broken)
    (broken / "keras_metadata.pb").write_bytes(b"\xff\xff\xff not a protobuf")
    with pytest.raises(ModelError, match="keras_metadata.pb is corrupt"):
        loading.load_model(broken)
    (broken / "keras_metadata.pb").unlink()
    with pytest.raises(ModelError, match="without keras_metadata.pb.*tf.saved_model.load"):
        loading.load_model(broken)
    graph = (broken / "saved_model.pb").read_bytes()
    (broken / "saved_model.pb").write_bytes(graph[: len(graph) // 2])
    assert bench(broken) == 2
    assert "TensorFlow cannot load this SavedModel" in one_line_error(capsys)


def test_a_savedmodel_with_cut_variables_is_named_by_both_loaders(good, tmp_path):
    cut_variables = tmp_path / "savedmodel"
    shutil.copytree(good["savedmodel"], cut_variables)
    for shard in cut_variables.glob("variables/variables.data-*"):  # a short read, not an OSError
        shard.write_bytes(shard.read_bytes()[:8])
    for load in (loading.load_model, loading.load_saved_model):
        with pytest.raises(ModelError, match=r"cannot load .*(IndexError|Read less).* again"):
            load(cut_variables)


def test_a_tflite_file_is_not_a_keras_model(good, tmp_path):
    (tmp_path / "model.tflite").write_bytes(good["model.tflite"])
    with pytest.raises(ModelError, match=r"is a \.tflite file, not a Keras model"):
        loading.load_model(tmp_path / "model.tflite")


def test_files_are_read_as_data_and_models_only_through_the_checked_loader():
    """Results, reports, configs, agent and tuner state are data: no pickle, no eval, YAML
    through safe_load, arrays without allow_pickle; models deserialize in loading.py alone
    (and in interop's round trip of a file it has just written itself)."""
    import re
    from pathlib import Path

    package = Path(kerasprune.__file__).parent
    forbidden = re.compile(r"\bpickle\b|allow_pickle\s*=\s*True|\beval\(|\bexec\(|yaml\.(unsafe_)?load\(|"
                           r"yaml\.Loader|marshal\.loads|dill\b|cloudpickle")
    model_loaders = re.compile(r"models\.load_model\(|saved_model\.load\(")
    for path in package.rglob("*.py"):
        text = path.read_text()
        assert not forbidden.search(text), f"{path}: {forbidden.search(text).group()}"
        if path.name not in ("loading.py", "interop.py"):
            assert not model_loaders.search(text), f"{path} loads a model past kerasprune.loading"
