"""The command line answers help and bad arguments before TensorFlow loads, in one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from kerasprune.cli import main

# Runs the CLI in a fresh interpreter and says whether TensorFlow got imported.
PROBE = """
import sys
from kerasprune.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print("tensorflow imported:", "tensorflow" in sys.modules, "exit:", code)
"""


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.parametrize("args, code", [(["--help"], 0), (["experiment", "missing.yaml"], 2),
                                        (["bench-train", "nope.yaml"], 2), (["report"], 2)])
def test_help_and_bad_arguments_are_answered_without_importing_tensorflow(args, code):
    done = _cli(*args)
    assert f"tensorflow imported: False exit: {code}" in done.stdout
    assert "Traceback" not in done.stderr and "cuda" not in done.stderr.lower()


def test_a_command_that_needs_tensorflow_prints_none_of_its_banners():
    done = _cli("models")
    assert "lenet5" in done.stdout
    assert done.stderr == ""  # no oneDNN, CUDA or absl lines


def test_report_on_a_json_that_is_not_a_results_file_is_one_line(tmp_path, capsys):
    other = tmp_path / "package.json"
    other.write_text(json.dumps({"name": "something else"}))
    assert main(["report", str(other)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kerasprune: error:") and "not a kerasprune results file" in err
    assert len(err.strip().splitlines()) == 1


STUDIES = {
    "untrained runs": {
        "experiment": "sparse_inference", "description": "", "dataset": None, "model": "m",
        "budget": "cpu", "command": "kerasprune sparse-study --sparsity 0.9", "environment": {},
        "runs": [{"run": "dense", "method": "dense", "accuracy": None, "sparsity": 0.0,
                  "not_measured": {"accuracy": "untrained"}}]},
    "no runs": {  # as kerasprune serving-load writes it: its findings are its own fields
        "experiment": "serving_load", "description": "", "dataset": None, "model": "m",
        "budget": "cpu", "command": "kerasprune serving-load", "environment": {},
        "runs": [], "requests": 100, "mismatches": 0},
    "no reported split": {  # runs with a history, but not the fields a report reads
        "experiment": "timing", "description": "", "dataset": "mnist", "model": "m",
        "budget": "cpu", "command": "kerasprune train-step", "environment": {},
        "runs": [{"run": "dense", "method": "dense", "history": {}}]},
}


@pytest.mark.parametrize("shape", STUDIES)
@pytest.mark.parametrize("command", ["report", "seeds"])
def test_report_and_seeds_refuse_a_studys_results_and_leave_its_report_alone(tmp_path, capsys, command,
                                                                               shape):
    study = STUDIES[shape]
    paths = [tmp_path / "study.json", tmp_path / "study.seed1.json"]
    for i, path in enumerate(paths):
        path.write_text(json.dumps({**study, "experiment": path.stem}))
    (tmp_path / "study.md").write_text("the study's own findings")
    assert main([command, *map(str, paths[:1 if command == "report" else 2])]) == 2
    err = capsys.readouterr().err
    assert f"`{study['command']}`, not of `kerasprune experiment`" in err
    assert len(err.strip().splitlines()) == 1
    assert (tmp_path / "study.md").read_text() == "the study's own findings"
    assert not (tmp_path / "study").exists()  # no plots left behind



@pytest.mark.parametrize("command", ["experiment", "tune"])
def test_download_reaches_the_loader(monkeypatch, command):
    """Every command that offers --download passes it on (tune once parsed and dropped it)."""
    from kerasprune import experiment
    from kerasprune.tuner import run as tune

    given = {}
    monkeypatch.setattr(experiment, "run_experiment", lambda *a, **k: given.update(k))
    monkeypatch.setattr(tune, "run_tune", lambda *a, **k: given.update(k))
    assert main([command, "experiments/tune_mnist.yaml", "--download"]) == 0
    assert given["download"] is True


def test_a_seed_numpy_and_tensorflow_cannot_take_is_refused_before_the_data_loads(capsys):
    assert main(["experiment", "experiments/mnist_lenet5.yaml", "--seed", "-1", "--data-dir", "/nowhere"]) == 2
    err = capsys.readouterr().err
    assert "--seed must be an integer from 0 to 2**32 - 1, got -1" in err and len(err.strip().splitlines()) == 1
