"""Side-by-side benchmarks: every artifact kind, ratios to a baseline, honest unavailability."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from kerasprune.backend import keras, tf
from kerasprune.benchmark import artifact, bench, footprint, markdown, parse_targets
from kerasprune.errors import ConfigError
from kerasprune import cli, export, loading
from kerasprune.results import RUN_FIELDS, TOP_FIELDS

FAST = {"rounds": 2, "min_block_seconds": 0.005, "warmup": 2, "progress": None}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """One small CNN saved three ways, in run folders like the experiments write them."""
    root = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    (root / "dense").mkdir()
    model.save(root / "dense" / "model.keras")
    export.to_tflite(model, root / "dense" / "model.tflite")
    tf.saved_model.save(model, str(root / "saved"))
    return root


def test_every_artifact_kind_is_measured_with_ratios_to_the_baseline(artifacts):
    models = [artifacts / "dense" / "model.tflite", artifacts / "dense" / "model.keras",
              artifacts / "saved"]
    result = bench(models, ["tflite@1", "tf-cpu"], baseline="dense", throughput_batch=4, **FAST)
    names = [m["name"] for m in result["runs"]]
    assert names == ["dense.tflite", "dense.keras", "saved"]  # run folder names, made unique
    assert result["benchmark"]["baseline"] == "dense.tflite"  # the first of the run's files
    first = result["runs"][0]
    assert first["method"] == "tflite" and first["latency_ms"] > 0 and first["sparsity"] >= 0
    assert first["accuracy"] is None and "random inputs" in first["not_measured"]["accuracy"]
    assert result["runs"][2]["accuracy"] is None  # a SavedModel folder: no run beside it
    assert first["params"] >= first["nonzero_params"] > 0 and first["macs"] > 0
    assert first["energy"]["estimated_uj"] > 0 and first["gzip_bytes"] < first["bytes"]
    lite = {(r["model"], r["batch"]): r for r in result["results"] if r["target"] == "tflite@1"}
    assert lite[("dense.tflite", 1)]["ratio"] == 1.0
    assert all(r["latency"]["runs"] > 0 for r in lite.values())
    assert lite[("saved", 4)]["latency"]["batch"] == 4
    on_tf = {r["model"]: r for r in result["results"] if r["target"] == "tf-cpu" and r["batch"] == 1}
    assert "tflite targets only" in on_tf["dense.tflite"]["unavailable"]
    assert on_tf["dense.keras"]["latency"]["median_ms"] > 0
    assert on_tf["dense.keras"]["ratio"] is None  # the baseline did not run on tf-cpu


def test_the_sparse_conversion_target_says_why_it_leaves_a_tflite_file_out(artifacts):
    from kerasprune.benchmark import artifact
    from kerasprune.benchmark.targets import TFLiteTarget

    reason = TFLiteTarget(sparse=True).unavailable(artifact(artifacts / "dense" / "model.tflite"), 1)
    assert "runs as it was converted" in reason
    assert TFLiteTarget(sparse=True).unavailable(artifact(artifacts / "dense" / "model.keras"), 1) is None


def test_a_models_accuracy_comes_from_the_experiment_run_that_wrote_it(artifacts, tmp_path):
    run = tmp_path / "adaptive_sparsity-0.8"
    run.mkdir()
    content = (artifacts / "dense" / "model.tflite").read_bytes()
    (run / "model.tflite").write_bytes(content)
    (run / "result.json").write_text(json.dumps(
        {"accuracy": 0.91, "f1": 0.9, "train_seconds": 12.5, "tflite_bytes": len(content)}))
    record = bench([run / "model.tflite"], ["tflite@1"], **FAST)["runs"][0]
    assert (record["accuracy"], record["f1"], record["train_seconds"]) == (0.91, 0.9, 12.5)
    assert "not_measured" not in record or "accuracy" not in record["not_measured"]
    (run / "result.json").write_text(json.dumps({"accuracy": 0.91, "tflite_bytes": len(content) + 1}))
    replaced = bench([run / "model.tflite"], ["tflite@1"], **FAST)["runs"][0]
    assert replaced["accuracy"] is None  # the file changed since that run: not its accuracy
    (run / "result.json").write_text(json.dumps({"accuracy": 0.91, "tflite_bytes": len(content)}))
    later = (run / "result.json").stat().st_mtime + 5
    os.utime(run / "model.tflite", (later, later))  # retrained since, to the same size
    assert bench([run / "model.tflite"], ["tflite@1"], **FAST)["runs"][0]["accuracy"] is None


def test_a_quantized_runs_keras_model_gets_its_keras_accuracy_not_its_files(artifacts, tmp_path):
    run = tmp_path / "quantized-int8"
    run.mkdir()
    (run / "model.keras").write_bytes((artifacts / "dense" / "model.keras").read_bytes())
    (run / "result.json").write_text(json.dumps(
        {"accuracy": 0.90, "f1": 0.89, "keras_accuracy": 0.93, "tflite_mode": "int8", "train_seconds": 3.0}))
    record = bench([run / "model.keras"], ["tflite@1"], **FAST)["runs"][0]
    assert (record["accuracy"], record["f1"]) == (0.93, None)
    assert "quantized file" in record["not_measured"]["f1"]


def test_a_missing_gpu_is_a_result_not_an_error(artifacts, monkeypatch):
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    result = bench([artifacts / "dense" / "model.keras"], ["tf-gpu"], throughput_batch=None, **FAST)
    (row,) = result["results"]
    assert row["unavailable"] == "TensorFlow sees no GPU on this machine"
    assert "Unavailable: TensorFlow sees no GPU" in markdown(result)


def test_bad_input_is_named(artifacts, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        artifact(tmp_path / "missing.tflite")
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ConfigError, match="suffix '.bin'"):
        artifact(tmp_path / "weights.bin")
    with pytest.raises(ConfigError, match="not a SavedModel"):
        artifact(tmp_path)
    with pytest.raises(ConfigError, match="baseline 'other'"):
        bench([artifacts / "dense" / "model.tflite"], ["tflite@1"], baseline="other", **FAST)
    with pytest.raises(ConfigError, match="unknown target 'tpu'"):
        bench([artifacts / "dense" / "model.tflite"], ["tpu"], **FAST)


def test_the_cli_writes_json_markdown_and_a_plot(artifacts, tmp_path, capsys):
    out = tmp_path / "bench" / "lenet.json"
    code = cli.main(["bench", f"mine={artifacts / 'dense' / 'model.tflite'}",
                     str(artifacts / "dense" / "model.keras"), "--target", "tflite@2", "android",
                     "--json", str(out), "--rounds", "2", "--block-seconds", "0.005",
                     "--throughput-batch", "0"])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["experiment"] == "lenet" and result["command"].startswith("kerasprune bench ")
    assert all(f in result for f in TOP_FIELDS) and set(result["not_measured"]) == {"dataset", "model", "budget"}
    assert all(f in run for run in result["runs"] for f in RUN_FIELDS)
    assert [m["name"] for m in result["runs"]] == ["mine", "dense"]
    assert result["benchmark"]["targets"] == ["tflite@2", "android@1"]
    assert "## `android@1`" in out.with_suffix(".md").read_text()
    assert out.with_suffix(".png").stat().st_size > 0


def test_the_cli_rejects_a_bad_thread_count(capsys):
    assert cli.main(["bench", "x.tflite", "--target", "tflite@0"]) == 2
    assert "positive integer" in capsys.readouterr().err


def test_runs_of_several_experiments_are_named_by_their_paths(artifacts, tmp_path):
    from kerasprune.benchmark.compare import _unique

    for exp in ("a", "b"):
        (tmp_path / exp / "dense").mkdir(parents=True)
        (tmp_path / exp / "dense" / "model.tflite").write_bytes(b"")
    named = _unique([artifact(tmp_path / exp / "dense" / "model.tflite") for exp in ("a", "b")])
    assert [a.name for a in named] == ["a/dense/model.tflite", "b/dense/model.tflite"]


def test_an_input_of_unknown_length_is_named(tmp_path):
    inputs = keras.Input((None,), dtype="int32")
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(9, 2)(inputs)))
    model.save(tmp_path / "model.keras")
    with pytest.raises(ConfigError, match=r"unknown size \(None,\)"):
        bench([tmp_path / "model.keras"], ["tflite@1"], **FAST)


def test_peak_memory_is_the_model_loading_and_warming_up_not_its_conversion(artifacts, monkeypatch):
    """A .keras file's peak on tflite@1 is its flatbuffer's, as a .tflite file's would be;
    on tf-cpu it includes loading the Keras model."""
    measuring, calls = [], []

    class Watched(footprint.PeakMemory):
        def __enter__(self):
            measuring.append(self)
            return super().__enter__()

        def __exit__(self, *exc):
            measuring.remove(self)
            return super().__exit__(*exc)

    def watch(what, fn):
        def watched(*args, **kwargs):
            calls.append((what, bool(measuring)))
            return fn(*args, **kwargs)
        return watched

    monkeypatch.setattr(footprint, "PeakMemory", Watched)
    monkeypatch.setattr(export, "to_tflite", watch("convert", export.to_tflite))
    monkeypatch.setattr(loading, "load_model", watch("load", loading.load_model))
    bench([artifacts / "dense" / "model.keras"], ["tflite@1", "tf-cpu"], throughput_batch=None, **FAST)
    assert ("convert", False) in calls and ("convert", True) not in calls
    assert ("load", True) in calls


def test_a_model_that_does_not_convert_to_tflite_is_timed_where_it_runs_and_says_why(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, [keras.layers.Dense(2)(inputs), keras.layers.Dense(3)(inputs)])
    model.save(tmp_path / "two_heads.keras")
    result = bench([tmp_path / "two_heads.keras"], ["tf-cpu", "tflite@1"], throughput_batch=None,
                   **FAST)
    rows = {r["target"]: r for r in result["results"]}
    assert rows["tf-cpu"]["latency"]["median_ms"] > 0
    assert "2 outputs" in rows["tflite@1"]["unavailable"]
    (run,) = result["runs"]
    assert run["params"] > 0 and run["latency_target"] == "tf-cpu"  # counted on the Keras model
    for figure in ("tflite_bytes", "tflite_gzip_bytes", "graph", "energy"):
        assert run[figure] is None and "2 outputs" in run["not_measured"][figure]
    table = markdown(result)
    assert "Unavailable: to_tflite: model" in table and "outputs; the checked export" in table
    row = next(line for line in table.splitlines() if line.startswith("| `two_heads` | keras |"))
    assert row.endswith("| – |") and row.count("–") == 2  # no TFLite bytes, no energy estimate


def test_a_tflite_file_and_a_saved_model_are_fed_the_token_ids_of_their_keras_twin(tmp_path):
    inputs = keras.Input((6,), dtype="int32")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(1000, 4)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(pooled))
    model.save(tmp_path / "m.keras")
    export.to_tflite(model, tmp_path / "m.tflite")
    tf.saved_model.save(model, str(tmp_path / "saved"))
    twins = [artifact(tmp_path / name) for name in ("m.keras", "m.tflite", "saved")]
    fed = [twin.example(16) for twin in twins]
    assert fed[0].max() > 1  # ids up to the table's 1000 rows, not 0 and 1
    for other in fed[1:]:
        np.testing.assert_array_equal(other, fed[0])
    assert all("below 1000" in twin.inputs() for twin in twins)


def test_an_integer_input_that_indexes_no_table_is_said_to_get_ids_0_and_1(tmp_path):
    inputs = keras.Input((3,), dtype="int32")
    model = keras.Model(inputs, keras.layers.Dense(2)(tf.cast(inputs, "float32")))
    export.to_tflite(model, tmp_path / "flags.tflite")
    flags = artifact(tmp_path / "flags.tflite")
    assert set(np.unique(flags.example(64))) == {0, 1}
    assert "no embedding table" in flags.inputs()


def test_a_model_xnnpack_refuses_is_reported_on_the_builtin_kernels_that_ran_it(artifacts, monkeypatch):
    from ai_edge_litert import interpreter as litert

    class RefusesXnnpack(litert.Interpreter):
        def __init__(self, *args, **kwargs):
            if "experimental_op_resolver_type" not in kwargs:  # the default delegate asked for
                raise RuntimeError("Failed to apply XNNPACK delegate")
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(litert, "Interpreter", RefusesXnnpack)
    result = bench([artifacts / "dense" / "model.tflite"], ["tflite@1"], throughput_batch=None, **FAST)
    (row,) = result["results"]
    assert row["runtime"] == "builtin (XNNPACK refused: Failed to apply XNNPACK delegate)"
    assert "Runtime: `dense` builtin (XNNPACK refused" in markdown(result)


@pytest.mark.parametrize("text, says", [("tf-cpu@4", "take no thread count"),
                                        ("tf-gpu@1", "take no thread count"),
                                        ("tflite@", "positive integer"),
                                        ("android@", "positive integer")])
def test_a_thread_count_a_target_would_drop_or_an_empty_one_is_refused(text, says):
    with pytest.raises(ConfigError, match=says):
        parse_targets([text])


@pytest.mark.parametrize("name", ["report.md", "report.png"])
def test_the_cli_refuses_a_json_path_its_markdown_or_plot_would_overwrite(artifacts, tmp_path,
                                                                          capsys, name):
    code = cli.main(["bench", str(artifacts / "dense" / "model.tflite"), "--target", "tflite@1",
                     "--json", str(tmp_path / name), "--rounds", "2", "--block-seconds", "0.005",
                     "--throughput-batch", "0"])
    assert code == 2
    assert "give a .json path, e.g. '" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # refused before anything was timed or written
