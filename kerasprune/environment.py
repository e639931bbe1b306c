"""A record of the machine and software a figure was measured on, stored with every result."""
from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from .backend import tf

PACKAGES = ("kerasprune", "tensorflow", "tf-keras", "tensorflow-model-optimization",
            "tensorflow-datasets", "ai-edge-litert", "ai-edge-quantizer", "keras-tuner", "numpy")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpuinfo(*keys: str) -> str | None:
    """The first ``/proc/cpuinfo`` value under one of ``keys`` (Linux), else None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(keys):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """The CPU's feature flags (x86 ``flags``, ARM ``Features``); empty where not exposed."""
    return set((_cpuinfo("flags", "Features") or "").split())


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _git_commit() -> str | None:
    """The commit of the kerasprune source, marked ``-dirty`` when it has local changes."""
    commit = _git("rev-parse", "--short", "HEAD")
    if commit and _git("status", "--porcelain", "--untracked-files=no", "--", "."):
        commit += "-dirty"
    return commit


def environment() -> dict:
    """Python, platform, CPU and threads, GPUs, package versions and the git commit."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or "default",
        "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or "default",
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        # oneDNN kernels change speed and round-off (kerasprune turns them on by default)
        "tf_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "packages": {p: _version(p) for p in PACKAGES},
        "git_commit": _git_commit(),
    }
