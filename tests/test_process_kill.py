"""A real process killed mid-run (SIGKILL, or SIGINT as Ctrl-C sends it) and started
again ends where an uninterrupted run ends, bit for bit: adaptive pruning (masks,
schedule, feedback), RigL (masks, regrowth counters), the RL agent (its networks,
memory, generator and plans) and a pruned run killed in its quantization-aware phase
(which goes on from its method's kept model, not from the method's first epoch), each
with its optimizer state, on a model with Dropout (``exact_resume``: its random state too).

The experiment runs in a subprocess on tfds' mock data with deterministic ops, so the
data order is controlled; the in-process variants of these tests raise inside ``fit``."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

CONFIG = """
experiment: killed
dataset: mnist
model: mnist_cnn
model_args: {width: 0.1}
exact_resume: true
methods:
  - method: dense
  - {method: adaptive, sparsity: 0.5, every: 1}
  - {method: rigl, sparsity: 0.8}
  - {method: rl, macs: 0.5, intervals: 2, episodes: 3, eval_batches: 1, confirm_batches: 0}
  - {method: adaptive, tag: qat, sparsity: 0.5, every: 1, quantize: {mode: mixed, bits: 8, epochs: 3}}
budgets:
  cpu:
    data: {batch_size: 8, max_train_examples: 48}
    train: {epochs: 3}
    finetune: {epochs: 3}
"""

# SIGINT as a terminal's Ctrl-C delivers it: a child of a background job or of pytest-xdist's
# workers inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler
DRIVER = """
import signal
import sys
signal.signal(signal.SIGINT, signal.default_int_handler)
import kerasprune
from kerasprune.backend import tf
import tensorflow_datasets as tfds
from kerasprune.cli import main
tf.config.experimental.enable_op_determinism()
with tfds.testing.mock_data(num_examples=40):
    sys.exit(main(sys.argv[1:]))
"""

RUNS = ("adaptive_sparsity-0.5", "rigl_sparsity-0.8", "rl", "adaptive-qat_sparsity-0.5")
# where each is killed: in its second epoch of three (its first is backed up), of its
# quantization-aware phase for the last
PHASES = {"adaptive-qat_sparsity-0.5": "adaptive-qat_sparsity-0.5 qat"}
SIGNALS = (signal.SIGKILL, signal.SIGINT, signal.SIGKILL, signal.SIGKILL)


def _command(config, out):
    return [sys.executable, "-c", DRIVER, "experiment", str(config), "--out", str(out),
            "--data-dir", "/unused"]


def _env():
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}


def _until(config, out, line: str, sig: int) -> str:
    """Run the experiment (on from where the last one stopped) and send ``sig`` as soon as
    it prints ``line``, after the run's second epoch of three: its first is backed up."""
    proc = subprocess.Popen(_command(config, out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=_env(), cwd=config.parent.parent)
    seen, deadline = [], time.monotonic() + 600
    for text in proc.stdout:
        seen.append(text)
        if line in text:
            proc.send_signal(sig)
            break
        assert time.monotonic() < deadline, "".join(seen[-30:])
    seen.extend(proc.stdout)
    proc.wait(timeout=120)
    assert proc.returncode != 0, f"the run ended before '{line}':\n" + "".join(seen[-30:])
    return "".join(seen)


def _finish(config, out) -> str:
    done = subprocess.run(_command(config, out), capture_output=True, text=True, env=_env(),
                          cwd=config.parent.parent, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done.stdout


def _weights(out, run):
    from kerasprune.loading import load_model

    model = load_model(out / "killed" / "cpu" / run / "model.keras", compile=False)
    return model.get_weights()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    config = root / "experiments" / "killed.yaml"
    config.parent.mkdir()
    config.write_text(textwrap.dedent(CONFIG))
    _finish(config, root / "whole")
    whole = json.loads((root / "experiments" / "results" / "killed.json").read_text())
    outputs = [_until(config, root / "cut", f"] {PHASES.get(run, run)} epoch 2/3", sig)
               for run, sig in zip(RUNS, SIGNALS)]  # each next command resumes the run cut before
    outputs.append(_finish(config, root / "cut"))
    logs = dict(zip(RUNS, outputs[1:]))
    cut = json.loads((root / "experiments" / "results" / "killed.json").read_text())
    return root, whole, cut, logs


@pytest.mark.parametrize("run", RUNS)
def test_a_killed_process_resumes_its_epochs_and_ends_on_the_uninterrupted_weights(runs, run):
    root, whole, cut, logs = runs
    log, phase = logs[run], PHASES.get(run, run)
    assert f"] {phase} epoch 3/3" in log and f"] {phase} epoch 1/3" not in log  # resumed, not restarted
    assert f"] {run} epoch 1/3" not in log  # nor the method's epochs before the phase killed
    first, again = ({r["run"]: r for r in results["runs"]}[run] for results in (whole, cut))
    for field in ("accuracy", "sparsity", "nonzero_params", "layer_sparsity", "macs"):
        assert first[field] == again[field], field
    assert first["history"]["val_loss"] == again["history"]["val_loss"]
    for a, b in zip(_weights(root / "whole", run), _weights(root / "cut", run), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_killed_rl_run_made_the_plans_of_the_uninterrupted_one(runs):
    _, whole, cut, _ = runs
    plans = [{r["run"]: r for r in results["runs"]}["rl"]["rl_plans"]
             for results in (whole, cut)]
    assert [p["ratios"] for p in plans[0]] == [p["ratios"] for p in plans[1]] and len(plans[0]) == 2
