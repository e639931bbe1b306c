"""The ``android`` target: TFLite's ``benchmark_model`` on a phone, driven over ``adb``.

The phone is where mobile latency is real (and where XNNPACK's sparse kernels exist); this
machine has no device, so the target reports itself unavailable with the reason.  The
tool's text output is parsed; each block is one tool run whose median is one observation,
so the row's ``runs`` counts tool runs and its percentiles are over their medians.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import KerasPruneError
from .artifacts import Artifact
from .targets import Target
from .timing import Block

_STEADY = re.compile(r"count=(\d+)(.*)")
_PAIR = re.compile(r"(\w+)=([-+0-9.eE]+)")
_TIMINGS = re.compile(r"Inference timings in us:(.*)")
_MEMORY = re.compile(r"Memory footprint delta from the start of the tool \(MB\): "
                     r"init=([0-9.]+) overall=([0-9.]+)")


def parse_benchmark_output(text: str) -> dict:
    """Statistics of one ``benchmark_model`` run, in milliseconds and MB.

    The last ``count=...`` line is the steady-state run (the first is the warm-up).
    Raises KerasPruneError with the tool's last lines when it printed no statistics.
    """
    steady = [m for m in (_STEADY.search(line) for line in text.splitlines()) if m]
    if not steady:
        tail = " | ".join(text.strip().splitlines()[-3:])
        raise KerasPruneError(f"benchmark_model printed no timing statistics; its output ended "
                              f"with: {tail or '(nothing)'}")
    fields = {k: float(v) for k, v in _PAIR.findall(steady[-1].group(2))}
    out = {"count": int(steady[-1].group(1)),
           **{f"{k}_ms": v / 1000.0 for k, v in fields.items()}}
    if timings := _TIMINGS.search(text):
        for part in timings.group(1).split(","):
            key, _, value = part.partition(":")
            if value.strip():
                slug = re.sub(r"\W+", "_", key.strip().lower()).strip("_")
                out[f"{slug}_ms"] = float(value) / 1000.0
    if memory := _MEMORY.search(text):
        out["memory_init_mb"], out["memory_overall_mb"] = map(float, memory.groups())
    return out


@dataclass
class AndroidTarget(Target):
    """``benchmark_model`` on the device ``serial`` (or the only one attached).

    ``binary`` is a local ``benchmark_model`` built for the phone (TFLite publishes
    ``android_aarch64_benchmark_model``); it is pushed once.  Without it, the tool must
    already be at ``<remote_dir>/benchmark_model`` on the device.
    """

    threads: int = 1
    adb: str = "adb"
    serial: str | None = None
    binary: str | None = None
    remote_dir: str = "/data/local/tmp/kerasprune"

    @property
    def name(self) -> str:
        return f"android@{self.threads}"

    def _adb(self, *args: str, timeout: float = 600) -> str:
        cmd = [self.adb, *(["-s", self.serial] if self.serial else []), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise KerasPruneError(f"android: `{' '.join(cmd)}` failed: "
                                  f"{(done.stderr or done.stdout).strip()[-300:]}")
        return done.stdout

    def devices(self) -> list[str]:
        lines = self._adb("devices").splitlines()[1:]
        return [line.split()[0] for line in lines if line.strip().endswith("\tdevice")
                or line.split()[-1:] == ["device"]]

    def unavailable(self, artifact: Artifact, batch: int) -> str | None:
        if shutil.which(self.adb) is None:
            return (f"'{self.adb}' is not on PATH: install Android platform-tools and attach "
                    "a phone with USB debugging to time on a device")
        if batch != 1:
            return "the android target times batch 1"
        try:
            attached = self.devices()
        except (KerasPruneError, OSError, subprocess.TimeoutExpired) as exc:
            return f"adb does not answer: {exc}"
        if not attached:
            return "no Android device attached (`adb devices` lists none in state 'device')"
        if self.serial and self.serial not in attached:
            return f"device {self.serial} is not attached (attached: {', '.join(attached)})"
        return artifact.unconvertible()

    def block(self, artifact: Artifact, batch: int) -> Block:
        tool = f"{self.remote_dir}/benchmark_model"
        self._adb("shell", "mkdir", "-p", self.remote_dir)
        if self.binary:
            self._adb("push", self.binary, tool)
            self._adb("shell", "chmod", "755", tool)
        remote = f"{self.remote_dir}/{re.sub(r'[^A-Za-z0-9_.-]', '_', artifact.name)}.tflite"
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "model.tflite"
            local.write_bytes(artifact.tflite())
            self._adb("push", str(local), remote)

        def run(n: int) -> np.ndarray:
            """One tool run of ``n`` inferences; its mean is this block's observation."""
            out = self._adb("shell", tool, f"--graph={remote}", f"--num_threads={self.threads}",
                            "--use_xnnpack=true", "--warmup_runs=1", f"--num_runs={n}",
                            "--min_secs=0")
            stats = parse_benchmark_output(out)
            return np.array([stats.get("median_ms", stats["avg_ms"])])

        return run
