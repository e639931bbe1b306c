"""The android target: benchmark_model's output parsed, adb driven (a fake adb here)."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kerasprune import to_tflite
from kerasprune.backend import keras
from kerasprune.benchmark.android import AndroidTarget, parse_benchmark_output
from kerasprune.benchmark.artifacts import Artifact
from kerasprune.errors import KerasPruneError

# The layout of TFLite's benchmark_model output (tensorflow/lite/tools/benchmark); written
# in that format for this test, since no phone is attached to this machine.
SAMPLE = (Path(__file__).parent / "data" / "benchmark_model_android.txt").read_text()


def test_the_steady_state_statistics_are_parsed_in_milliseconds():
    stats = parse_benchmark_output(SAMPLE)
    assert stats["count"] == 37  # the second count= line, not the warm-up
    assert stats["avg_ms"] == pytest.approx(0.101243)
    assert stats["median_ms"] == pytest.approx(0.098)
    assert stats["p95_ms"] == pytest.approx(0.131)
    assert stats["init_ms"] == pytest.approx(3.214)
    assert stats["first_inference_ms"] == pytest.approx(2.431)
    assert stats["memory_overall_mb"] == pytest.approx(3.42969)


def test_output_without_statistics_raises_with_the_tools_last_words():
    with pytest.raises(KerasPruneError, match="Failed to allocate tensors"):
        parse_benchmark_output("Loaded model x.tflite\nERROR: Failed to allocate tensors!\n")


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    """An ``adb`` on PATH that logs its calls and answers like a phone would."""
    log = tmp_path / "adb.log"
    script = tmp_path / "bin" / "adb"
    script.parent.mkdir()
    script.write_text(f"""#!/bin/sh
echo "$@" >> {log}
case "$*" in
  *devices*) printf 'List of devices attached\\n'; cat {tmp_path}/devices 2>/dev/null; true ;;
  *benchmark_model*) cat {Path(__file__).parent / 'data' / 'benchmark_model_android.txt'} ;;
esac
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    return tmp_path, log


def _artifact(tmp_path) -> Artifact:
    path = tmp_path / "m.tflite"
    if not path.exists():  # a real flatbuffer: kerasprune checks it before pushing it
        to_tflite(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]), path)
    return Artifact("m", path, "tflite")


def test_without_adb_the_target_says_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    reason = AndroidTarget().unavailable(_artifact(tmp_path), 1)
    assert "not on PATH" in reason and "platform-tools" in reason


def test_without_a_device_the_target_is_unavailable(fake_adb):
    tmp_path, _ = fake_adb
    assert "no Android device attached" in AndroidTarget().unavailable(_artifact(tmp_path), 1)


def test_with_a_device_the_model_is_pushed_and_timed(fake_adb):
    tmp_path, log = fake_adb
    (tmp_path / "devices").write_text("R58M123\tdevice\n")
    target = AndroidTarget(threads=4, binary=str(tmp_path / "benchmark_model"))
    assert target.unavailable(_artifact(tmp_path), 1) is None
    assert "batch 1" in target.unavailable(_artifact(tmp_path), 8)
    block = target.block(_artifact(tmp_path), 1)
    assert block(50).tolist() == [pytest.approx(0.098)]  # the tool's median of 50 runs
    calls = log.read_text()
    assert "push" in calls and "/data/local/tmp/kerasprune/m.tflite" in calls
    assert "--num_threads=4" in calls and "--num_runs=50" in calls


def test_a_named_device_that_is_not_attached_is_reported(fake_adb):
    tmp_path, _ = fake_adb
    (tmp_path / "devices").write_text("R58M123\tdevice\n")
    reason = AndroidTarget(serial="OTHER").unavailable(_artifact(tmp_path), 1)
    assert "OTHER is not attached" in reason and "R58M123" in reason
