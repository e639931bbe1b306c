"""kerasprune: smaller, faster tf_keras models, on top of tensorflow-model-optimization.

Importing kerasprune binds tf_keras (Keras 2) before TensorFlow is used; see
:mod:`kerasprune.backend`.
"""
from . import backend  # noqa: F401  (must come first: binds tf.keras to tf_keras)
from . import benchmark, data, metrics, models, structured
from .callbacks import AdaptivePruning, KeepBest
from .errors import ConfigError, DataError, ExportError, KerasPruneError, ModelError
from .experiment import run_experiment
from .export import to_tflite
from .pruning import prune, set_sparsity, strip
from .schedules import FeedbackSchedule
from .wrapper import PruningWrapper

__version__ = "0.1.0"

__all__ = [
    "AdaptivePruning", "ConfigError", "DataError", "ExportError", "FeedbackSchedule",
    "KeepBest", "KerasPruneError", "ModelError", "PruningWrapper",
    "benchmark", "data", "metrics", "models", "prune", "run_experiment", "set_sparsity", "strip",
    "structured", "to_tflite",
]
