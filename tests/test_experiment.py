"""An experiment runs end to end, writes the results schema and a report, and resumes."""
from __future__ import annotations

import json
import textwrap

import pytest

from kerasprune.backend import keras
from kerasprune.cli import main
from kerasprune.errors import ConfigError
from kerasprune.experiment import run_experiment
from kerasprune.experiment.spec import TrainSpec
from kerasprune.experiment.training import fit
from kerasprune.results import RUN_FIELDS, TOP_FIELDS

CONFIG = """
experiment: tiny
dataset: mnist
model: lenet_300_100
model_args: {width: 0.1}
methods:
  - method: tfmot_gmp
    sparsity: 0.5
    frequency: 1
  - method: adaptive
    sparsity: 0.5
    every: 1
budgets:
  cpu:
    data: {batch_size: 8, max_train_examples: 32}
    train: {epochs: 1}
    finetune: {epochs: 2}
"""



@pytest.fixture
def tiny(tmp_path, mock_tfds):
    return _write_config(tmp_path, "tiny", CONFIG)


def _write_config(tmp_path, name: str, text: str):
    config = tmp_path / "experiments" / f"{name}.yaml"
    config.parent.mkdir(exist_ok=True)
    config.write_text(textwrap.dedent(text))
    return config


def _run(config, tmp_path, messages=None, **kwargs):
    log = messages.append if messages is not None else (lambda m: None)
    return run_experiment(config, out_dir=tmp_path / "out", data_dir="/unused", log=log, **kwargs)


def test_results_json_has_the_schema_and_the_report_its_plots(tiny, tmp_path):
    results = _run(tiny, tmp_path)
    written = json.loads((tiny.parent / "results" / "tiny.json").read_text())
    assert written == json.loads(json.dumps(results))
    for key in TOP_FIELDS:
        assert written[key] not in (None, [])
        assert written[key] != "" or key == "description"  # the tiny config has none
    assert [r["method"] for r in written["runs"]] == ["dense", "tfmot_gmp", "adaptive"]
    for run in written["runs"]:
        assert all(run[k] is not None for k in RUN_FIELDS), run
    # every run's TFLite model is timed in the same interleaved rounds, as ratios to dense
    assert written["benchmark"]["baseline"] == "dense"
    assert written["runs"][0]["latency_ratio"] == 1.0
    assert all(r["latency"]["blocks"] == written["benchmark"]["rounds"] for r in written["runs"])
    # and each says what ran it and what it was fed
    assert all(r["runtime"] == "XNNPACK" and r["inputs"].startswith("random standard normal")
               for r in written["runs"])
    pruned = written["runs"][1]
    assert pruned["sparsity"] == pytest.approx(0.5, abs=0.02)
    assert pruned["nonzero_params"] < written["runs"][0]["nonzero_params"]
    assert pruned["macs_effective"] < pruned["macs"]
    assert len(pruned["history"]["sparsity"]) == 2
    adaptive = written["runs"][2]
    assert adaptive["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert [d["action"] for d in adaptive["decisions"]][0] == "step"
    assert adaptive["history"]["pruning_target"] == [0.5, 0.5]  # decided at once, ramps in over epoch 2
    report = (tiny.parent / "results" / "tiny.md").read_text()
    assert "Pruning decisions of `adaptive" in report
    assert "tfmot_gmp_sparsity-0.5" in report and "kerasprune experiment" in report
    for plot in ("accuracy_vs_sparsity", "sparsity_over_epochs", "size", "latency"):
        assert f"tiny/{plot}.png" in report
        assert (tiny.parent / "results" / "tiny" / f"{plot}.png").stat().st_size > 1000
    out = tmp_path / "out" / "tiny" / "cpu" / "tfmot_gmp_sparsity-0.5"
    assert {"model.keras", "model.tflite", "result.json", "history.csv"} <= {p.name for p in out.iterdir()}
    assert not (out / "backup").exists()


def test_a_rerun_keeps_finished_runs_and_a_changed_config_reruns_them(tiny, tmp_path):
    first = _run(tiny, tmp_path)
    messages: list[str] = []
    second = _run(tiny, tmp_path, messages)
    assert sum("done earlier" in m for m in messages) == 3
    assert [r["accuracy"] for r in second["runs"]] == [r["accuracy"] for r in first["runs"]]

    tiny.write_text(tiny.read_text().replace("finetune: {epochs: 2}", "finetune: {epochs: 1}"))
    messages.clear()
    _run(tiny, tmp_path, messages)
    assert any("tfmot_gmp_sparsity-0.5: running" in m for m in messages)
    assert any("dense: done earlier" in m for m in messages)

    (tmp_path / "out" / "tiny" / "cpu" / "tfmot_gmp_sparsity-0.5" / "model.tflite").unlink()
    messages.clear()
    _run(tiny, tmp_path, messages)  # a result whose file is gone could not be timed: it runs again
    assert any("tfmot_gmp_sparsity-0.5: running" in m for m in messages)
    assert any("adaptive_sparsity-0.5: done earlier" in m for m in messages)


class _Crash(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt("killed")


def test_a_killed_training_resumes_from_its_last_epoch(tmp_path, mock_tfds):
    from kerasprune import data, models
    from kerasprune.experiment.training import compile_for

    d = data.load("mnist", batch_size=8, max_train_examples=16, data_dir="/unused")
    spec = TrainSpec(epochs=3)

    def fresh_model():
        model = models.build_for(d, "lenet_300_100", width=0.1)
        return compile_for(model, spec, steps_per_epoch=2)

    with pytest.raises(KeyboardInterrupt):
        fit(fresh_model(), d, spec, label="t", run_dir=tmp_path, callbacks=[_Crash()])
    assert (tmp_path / "backup").exists()
    history = fit(fresh_model(), d, spec, label="t", run_dir=tmp_path)
    assert len(history["loss"]) == 3  # epochs 1-2 from before the kill, 3 after it
    assert not (tmp_path / "backup").exists()


@pytest.mark.parametrize("clipnorm", [0.0, 0.5])
def test_a_phase_with_clipnorm_clips_each_gradient_to_that_norm(clipnorm):
    import numpy as np

    from kerasprune.experiment.training import compile_for

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, use_bias=False, activation="softmax")])
    spec = TrainSpec(epochs=1, optimizer="sgd", momentum=0.0, learning_rate=1.0, schedule="constant",
                     clipnorm=clipnorm)
    compile_for(model, spec, steps_per_epoch=1)
    before = model.get_weights()[0]
    model.train_on_batch(np.full((8, 4), 10.0, np.float32), np.arange(8) % 3)  # a steep loss
    step = np.linalg.norm(model.get_weights()[0] - before)  # the learning rate is 1
    assert step == pytest.approx(0.5, rel=1e-4) if clipnorm else step > 5.0  # unclipped: 12.2


def test_a_backup_of_another_model_gets_a_specific_error(tmp_path, mock_tfds):
    from kerasprune import data, models
    from kerasprune.errors import ModelError
    from kerasprune.experiment.training import compile_for

    d = data.load("mnist", batch_size=8, max_train_examples=16, data_dir="/unused")
    spec = TrainSpec(epochs=3)

    def model(width):
        return compile_for(models.build_for(d, "lenet_300_100", width=width), spec, steps_per_epoch=2)

    with pytest.raises(KeyboardInterrupt):
        fit(model(0.1), d, spec, label="t", run_dir=tmp_path, callbacks=[_Crash()])
    with pytest.raises(ModelError, match="backup holds a checkpoint of another model.*--fresh"):
        fit(model(0.2), d, spec, label="t", run_dir=tmp_path)


def test_a_backup_of_an_unknown_config_is_not_restored(tiny, tmp_path):
    """A folder left by an older kerasprune (no fingerprint) held a different model."""
    run_dir = tmp_path / "out" / "tiny" / "cpu" / "dense"
    (run_dir / "backup").mkdir(parents=True)
    (run_dir / "backup" / "checkpoint").write_text("a model of another shape")
    (run_dir / "history.csv").write_text("epoch,loss\n0,9.9\n")
    (run_dir / "qat" / "backup").mkdir(parents=True)  # a QAT phase's own, likewise
    (run_dir / "random_state.json").write_text("{}")
    messages: list[str] = []
    results = _run(tiny, tmp_path, messages)
    assert any("no record of the config of the interrupted run" in m for m in messages)
    assert len(results["runs"][0]["history"]["loss"]) == 1  # trained afresh, old row gone
    assert not (run_dir / "qat").exists() and not (run_dir / "random_state.json").exists()


def test_cli_reports_input_errors_in_one_line(tmp_path, capsys):
    assert main(["experiment", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kerasprune: error: experiment config") and "does not exist" in err
    assert "Traceback" not in err


def test_cli_lists_models_and_datasets(capsys):
    assert main(["models"]) == 0 and "resnet20" in capsys.readouterr().out
    assert main(["datasets"]) == 0 and "glue/sst2" in capsys.readouterr().out


def test_history_keeps_one_row_per_epoch(tmp_path):
    from kerasprune.experiment.training import read_history

    log = tmp_path / "history.csv"
    log.write_text("epoch,loss\n0,0.9\n1,0.5\n1,0.4\n2,0.3\n")  # epoch 1 redone after a kill
    assert read_history(log) == {"loss": [0.9, 0.4, 0.3]}


def test_cli_names_a_dataset_missing_from_the_data_dir(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(textwrap.dedent(CONFIG).replace("dataset: mnist", "dataset: cifar10"))
    assert main(["experiment", str(config), "--data-dir", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "dataset 'cifar10' is not prepared" in err and str(tmp_path / "empty") in err


def _report_run(name, method, accuracy, macs, val=None, **settings):
    return {"run": name, "method": method,
            "settings": {"sparsity": 0.9, **settings} if method != "dense" else {},
            "history": {"val_accuracy": [val]} if val is not None else {},
            "accuracy": accuracy, "f1": accuracy, "sparsity": 0.9, "params": 10, "nonzero_params": 1,
            "macs": 100, "macs_effective": macs, "tflite_bytes": 1000, "tflite_gzip_bytes": 500,
            "latency_ms": 0.1, "latency": {"p90_ms": 0.2}, "train_seconds": 1.0,
            "train_step_ms": 2.0, "peak_memory_mb": 1.0}


def _report(tmp_path, runs) -> str:
    from kerasprune.experiment.report import write_report

    results = {"experiment": "x", "description": "", "dataset": "mnist", "model": "m", "budget": "cpu",
               "command": "c", "evaluated_on": "test",
               "environment": {"cpu": "c", "cores": 2, "gpus": [], "packages": {}, "git_commit": "g"},
               "runs": runs}
    return write_report(results, tmp_path / "x.md").read_text()


def test_the_report_compares_each_method_with_tfmot_at_the_same_sparsity(tmp_path):
    text = _report(tmp_path, [_report_run("dense", "dense", 0.99, 100), _report_run("tfmot", "tfmot_gmp", 0.95, 10),
                              _report_run("ours", "adaptive", 0.97, 20)])
    assert "| `ours` | `tfmot` | +2.00 | 2.00 | 1.000 |" in text
    assert "tfmot's sweep" not in text  # one tfmot run per sparsity: nothing was chosen


def test_the_report_compares_with_tfmots_best_run_chosen_on_validation_and_shows_the_sweep(tmp_path):
    text = _report(tmp_path, [
        _report_run("dense", "dense", 0.99, 100),
        _report_run("tfmot-lucky", "tfmot_gmp", 0.96, 10, val=0.90, learning_rate=0.002),  # best on test
        _report_run("tfmot-recipe", "tfmot_gmp", 0.95, 10, val=0.94, learning_rate=0.001),
        _report_run("ours", "adaptive", 0.97, 20, val=0.95)])
    assert "| `ours` | `tfmot-recipe` | +2.00 |" in text  # validation chooses, never the test split
    assert "| 0.9 | `tfmot-lucky` | 0.002 | 0.9000 | 0.9600 |  |" in text
    assert "| 0.9 | `tfmot-recipe` | 0.001 | 0.9400 | 0.9500 | best |" in text
    assert "### Best against" not in text  # ours tried one setting: its row above is its best


def test_the_report_compares_a_methods_best_run_with_tfmots_best_both_chosen_on_validation(tmp_path):
    text = _report(tmp_path, [
        _report_run("dense", "dense", 0.99, 100),
        _report_run("tfmot-a", "tfmot_gmp", 0.95, 10, val=0.94), _report_run("tfmot-b", "tfmot_gmp", 0.96, 10, val=0.93),
        _report_run("ours-a", "rigl", 0.98, 10, val=0.92), _report_run("ours-b", "rigl", 0.97, 10, val=0.95),
        _report_run("ours-c", "rigl", 0.99, 10, val=0.91),
        {**_report_run("ours-longer", "rigl", 0.99, 10, val=0.99), "epochs": 20},  # another budget
        {**_report_run("static-longer", "static", 0.99, 10, val=0.99), "epochs": 20},
        _report_run("static", "static", 0.94, 10, val=0.90)])
    assert "| `rigl` | 0.9 | `ours-b` (of 3) | `tfmot-a` (of 2) | +2.00 |" in text
    assert "| `static` | 0.9 |" not in text  # one run at tfmot's length: nothing was chosen


def test_the_report_compares_a_methods_best_run_with_dense_chosen_on_validation(tmp_path):
    text = _report(tmp_path, [
        {**_report_run("dense", "dense", 0.99, 100), "epochs": 3},
        {**_report_run("rigl", "rigl", 0.985, 10, val=0.90), "epochs": 3},
        {**_report_run("rigl-a1", "rigl", 0.97, 10, val=0.93), "epochs": 3},  # validation picks it
        {**_report_run("rigl-2x", "rigl", 0.995, 10, val=0.99), "epochs": 6},  # another budget
        {**_report_run("static", "static", 0.98, 10, val=0.95), "epochs": 3}])
    assert "### Best against dense" in text
    assert "| `rigl` | 0.9 | `rigl-a1` (of 2) | `dense` | -2.00 |" in text
    assert "| `static` | 0.9 |" not in text  # one setting: its row against dense above is all there is


def _lenet_mnist(tmp_path, name: str, methods: str, finetune_epochs: int, keep_best: bool = False):
    """A tiny MNIST LeNet-5 experiment with the given methods (YAML list items)."""
    keep = ", keep_best: true" if keep_best else ""
    return _write_config(tmp_path, name, f"""
        experiment: {name}
        dataset: mnist
        model: lenet5
        methods: {methods}
        budgets:
          cpu:
            data: {{batch_size: 8, max_train_examples: 32}}
            train: {{epochs: 1}}
            finetune: {{epochs: {finetune_epochs}{keep}}}
    """)


def test_the_structured_method_fine_tunes_a_smaller_model(tmp_path, mock_tfds):
    config = _lenet_mnist(tmp_path, "small", "[{method: dense}, {method: structured, ratio: 0.5, "
                          "importance: apoz, batches: 2}]", finetune_epochs=1)
    dense, small = _run(config, tmp_path)["runs"]
    assert small["run"] == "structured"
    assert small["widths"] == {"conv1": "3/6", "conv2": "8/16", "fc1": "60/120", "fc2": "42/84"}
    assert small["left_intact"] == {"logits": "its softmax mixes its output channels"}
    assert small["params"] < dense["params"] / 2 and small["sparsity"] == 0.0
    assert (tmp_path / "out" / "small" / "cpu" / "structured" / "model.tflite").exists()


def test_a_tagged_run_trains_with_its_own_batch_size_and_learning_rate(tmp_path, mock_tfds, monkeypatch):
    from kerasprune.experiment import training

    seen, fit = [], training.fit
    monkeypatch.setattr(training, "fit", lambda model, data, spec, **kw: seen.append(
        (data.batch_size, spec.learning_rate, spec.schedule, spec.epochs, spec.clipnorm))
        or fit(model, data, spec, **kw))
    config = _lenet_mnist(tmp_path, "own", "[{method: dense}, {method: tfmot_gmp, tag: b4, sparsity: 0.5, "
                          "frequency: 1, batch_size: 4, learning_rate: 0.01, schedule: constant, "
                          "clipnorm: 1.0}]", finetune_epochs=2)
    dense, tuned = _run(config, tmp_path)["runs"]
    assert seen == [(8, 0.001, "cosine", 1, 0.0), (4, 0.01, "constant", 2, 1.0)]  # the epochs stay the budget's
    assert tuned["run"] == "tfmot_gmp-b4_sparsity-0.5" and tuned["tag"] == "b4"
    assert {k: tuned["settings"][k] for k in ("sparsity", "frequency", "end_fraction", "batch_size",
                                              "learning_rate", "schedule", "optimizer")} == {
        "sparsity": 0.5, "frequency": 1, "end_fraction": 0.7, "batch_size": 4, "learning_rate": 0.01,
        "schedule": "constant", "optimizer": "adam"}  # what it trained with, defaults filled in
    assert tuned["settings"]["clipnorm"] == 1.0 and "clipnorm" not in dense["settings"]
    assert dense["settings"]["batch_size"] == 8 and "tag" not in dense
    assert tuned["sparsity"] == pytest.approx(0.5, abs=0.01)


def test_a_run_can_fine_tune_against_the_dense_baselines_outputs(tmp_path, mock_tfds, monkeypatch):
    from kerasprune.experiment import training

    teachers, fit = [], training.fit
    monkeypatch.setattr(training, "fit", lambda model, data, spec, **kw: teachers.append(
        (spec.distill, kw["teacher"] is not None and kw["teacher"].count_params())) or fit(model, data, spec, **kw))
    config = _lenet_mnist(tmp_path, "kd", "[{method: dense}, {method: structured, tag: kd, ratio: 0.5, "
                          "distill: 0.7, temperature: 2}, {method: structured, ratio: 0.5}]",
                          finetune_epochs=2, keep_best=True)
    dense, kd, plain = _run(config, tmp_path)["runs"]
    assert teachers == [(0.0, False), (0.7, dense["params"]), (0.0, False)]  # the baseline teaches
    assert kd["run"] == "structured-kd" and kd["settings"]["distill"] == 0.7
    assert kd["settings"]["temperature"] == 2 and "distill" not in plain["settings"]
    assert len(kd["history"]["val_accuracy"]) == 2 and kd["history"]["kept_epoch"]  # monitored as ever
    assert kd["history"]["loss"] != plain["history"]["loss"]  # same start and data, another loss
    assert kd["params"] == plain["params"]
    # its training FLOPs add the teacher's forward pass over every example of its 2 epochs
    extra = kd["train_flops"] - plain["train_flops"]
    assert extra > 0 and extra % (2 * dense["macs"] * 2) == 0


def test_the_dense_finetune_control_trains_on_without_pruning(tmp_path, mock_tfds):
    config = _lenet_mnist(tmp_path, "control", "[{method: dense}, {method: dense_finetune}]",
                          finetune_epochs=2)
    dense, control = _run(config, tmp_path)["runs"]
    assert control["run"] == "dense_finetune" and control["epochs"] == 2
    assert control["sparsity"] == 0.0 and control["params"] == dense["params"]


def test_keep_best_ends_every_pruning_run_on_an_epoch_at_its_sparsity(tmp_path, mock_tfds):
    config = _lenet_mnist(tmp_path, "best", "[{method: dense}, {method: tfmot_gmp, sparsity: 0.5, "
                          "frequency: 1, end_fraction: 0.5}, {method: adaptive, sparsity: 0.5, "
                          "initial: 0.5, finish_fraction: 0.4}]", finetune_epochs=3, keep_best=True)
    dense, gmp, adaptive = _run(config, tmp_path)["runs"]
    for run in (gmp, adaptive):
        kept = run["history"]["kept_epoch"][0]
        assert 1 <= kept <= 3 and run["history"]["sparsity"][kept - 1] >= 0.495
        assert run["sparsity"] == pytest.approx(0.5, abs=0.01)  # what is handed back is sparse
        assert not (tmp_path / "out" / "best" / "cpu" / run["run"] / "best").exists()
    assert "kept_epoch" not in dense["history"]  # keep_best is set for the finetune phase only
    assert "## Epoch kept" in (config.parent / "results" / "best.md").read_text()


def test_pruning_from_scratch_trains_for_the_baselines_own_epochs(tmp_path, mock_tfds):
    config = _lenet_mnist(tmp_path, "scratch", "[{method: dense}, {method: tfmot_gmp, sparsity: 0.5, "
                          "start: scratch, begin_fraction: 0.25, end_fraction: 0.5, frequency: 1}, "
                          "{method: adaptive, sparsity: 0.5, initial: 0.5, start: scratch}]",
                          finetune_epochs=1)
    config.write_text(config.read_text().replace("train: {epochs: 1}", "train: {epochs: 3}"))
    dense, gmp, adaptive = _run(config, tmp_path)["runs"]
    for run in (gmp, adaptive):
        assert run["epochs"] == 3 and len(run["history"]["loss"]) == 3  # the train phase, not finetune
        assert run["history"]["sparsity"][0] < 0.5  # it starts dense: nothing trained yet to rank
        assert run["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert dense["epochs"] == 3


def test_another_seed_writes_its_own_results(tiny, tmp_path):
    results = _run(tiny, tmp_path, only=["tfmot_gmp_sparsity-0.5"], seed=3)
    assert results["experiment"] == "tiny.seed3"
    assert (tiny.parent / "results" / "tiny.seed3.json").exists()
    assert (tmp_path / "out" / "tiny.seed3" / "cpu" / "dense" / "model.keras").exists()
    assert not (tiny.parent / "results" / "tiny.json").exists()


def test_only_refuses_to_rewrite_results_without_runs_it_cannot_keep(tiny, tmp_path):
    _run(tiny, tmp_path)
    written = tiny.parent / "results" / "tiny.json"
    before = written.read_text()
    (tmp_path / "out" / "tiny" / "cpu" / "dense" / "result.json").unlink()  # as on a fresh clone
    with pytest.raises(ConfigError, match=r"without runs it records \(adaptive_sparsity-0.5\): the "
                                          r"baseline would be retrained"):
        _run(tiny, tmp_path, only=["tfmot_gmp_sparsity-0.5"])
    assert written.read_text() == before
    _run(tiny, tmp_path, only=["tfmot_gmp_sparsity-0.5", "adaptive_sparsity-0.5"])  # all of them: fine


def test_a_run_killed_midway_leaves_the_results_file_as_it_was(tiny, tmp_path, monkeypatch):
    """The runs done so far go beside the models, not over a results file that records runs
    this command has not redone yet (a committed one, on a fresh clone); and a run made from
    the baseline it retrained before the kill is not kept by the next command."""
    from kerasprune.experiment import runner

    _run(tiny, tmp_path)
    written = tiny.parent / "results" / "tiny.json"
    before = written.read_text()
    run_one = runner._run_one

    def killed_at_adaptive(config, run, *args):
        if run.method == "adaptive":
            raise KeyboardInterrupt("killed")
        return run_one(config, run, *args)

    monkeypatch.setattr(runner, "_run_one", killed_at_adaptive)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny, tmp_path, fresh=True)
    assert written.read_text() == before
    partial = tmp_path / "out" / "tiny" / "cpu" / runner.PARTIAL
    assert [r["run"] for r in json.loads(partial.read_text())["runs"]] == ["dense", "tfmot_gmp_sparsity-0.5"]
    monkeypatch.setattr(runner, "_run_one", run_one)
    messages: list[str] = []
    _run(tiny, tmp_path, messages)
    assert not partial.exists() and written.read_text() != before  # complete: written, and the rest gone
    # adaptive's first result came from the baseline the killed command retrained: not kept
    assert any("adaptive_sparsity-0.5: running" in m for m in messages)
    assert any("tfmot_gmp_sparsity-0.5: done earlier" in m for m in messages)


def test_a_resumed_run_sees_the_shuffled_data_in_the_uninterrupted_order(tmp_path, mock_tfds):
    """BackupAndRestore alone restarts fit()'s shuffle; the harness puts it where it was."""
    import numpy as np

    from kerasprune import data, models
    from kerasprune.backend import tf
    from kerasprune.experiment.training import compile_for

    tf.config.experimental.enable_op_determinism()
    d = data.load("mnist", batch_size=8, max_train_examples=32, data_dir="/unused")
    spec = TrainSpec(epochs=4)

    def fresh_model():
        keras.utils.set_random_seed(0)
        return compile_for(models.build_for(d, "lenet_300_100", width=0.1), spec, steps_per_epoch=4)

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    uninterrupted = fresh_model()
    fit(uninterrupted, d, spec, label="a", run_dir=tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        fit(fresh_model(), d, spec, label="b", run_dir=tmp_path / "b", callbacks=[_Crash()])
    resumed = fresh_model()
    fit(resumed, d, spec, label="b", run_dir=tmp_path / "b")
    for a, b in zip(uninterrupted.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_run_whose_loss_turns_nan_fails_with_the_fix(tmp_path, mock_tfds):
    from kerasprune import data, models
    from kerasprune.errors import TrainingError
    from kerasprune.experiment.training import compile_for

    d = data.load("mnist", batch_size=8, max_train_examples=16, data_dir="/unused")
    spec = TrainSpec(epochs=2, learning_rate=1e30)  # diverges at once
    model = compile_for(models.build_for(d, "lenet_300_100", width=0.1), spec, steps_per_epoch=2)
    with pytest.raises(TrainingError, match="t: the training loss stopped being finite at epoch 1.*"
                                            "Lower the phase's learning_rate"):
        fit(model, d, spec, label="t", run_dir=tmp_path)
