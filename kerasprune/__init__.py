"""kerasprune: smaller, faster tf_keras models, on top of tensorflow-model-optimization.

Importing kerasprune sets ``TF_USE_LEGACY_KERAS=1``, so TensorFlow binds ``tf.keras`` to
tf_keras (Keras 2) whenever it is imported (see :mod:`kerasprune.backend`).  The API below
loads on first use, so ``import kerasprune`` (and ``kerasprune --help``) does not pay for
TensorFlow until something needs it; if TensorFlow is already imported, the binding is
checked at once.
"""
from __future__ import annotations

import importlib
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide oneDNN/CUDA banners unless asked
# TensorFlow turns its oneDNN kernels on only for the CPUs it knows (AVX-512 Intel); on an
# AVX2 AMD EPYC they were off and LeNet-5 trained 2.2x slower (57 -> 26 ms a step).  A
# user's own setting wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from .errors import (  # noqa: E402  (no TensorFlow behind these)
    ConfigError,
    DataError,
    ExportError,
    FileError,
    KerasPruneError,
    ModelError,
    TrainingError,
)

if "tensorflow" in sys.modules:  # tf.keras may be bound already: fail now, not later
    from . import backend  # noqa: F401

__version__ = "0.1.0"

#: public name -> the module that defines it (imported on first access)
_API = {
    "AdaptivePruning": "sparsity", "KeepBest": "sparsity", "FeedbackSchedule": "sparsity",
    "DynamicSparsity": "sparsity", "RLPruning": "agent",
    "PruningWrapper": "sparsity", "prune": "sparsity", "set_sparsity": "sparsity",
    "strip": "sparsity", "to_tflite": "export", "load_model": "loading",
    "AdaptiveInference": "inference", "from_keras3": "interop", "to_keras3": "interop",
    "multi_worker_strategy": "distribute",
}
_MODULES = ("agent", "backend", "benchmark", "data", "distillation", "export", "inference", "metrics",
            "models", "quantization", "sparsity", "structured")

__all__ = [
    "ConfigError", "DataError", "ExportError", "FileError", "KerasPruneError", "ModelError",
    "TrainingError", *_API, *_MODULES,
]


def __getattr__(name: str):
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _API:
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'kerasprune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
