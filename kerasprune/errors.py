"""Exceptions kerasprune raises for bad input.

Each message says what is wrong, where (file, layer, dataset) and how to fix it, so a user
never has to read a TensorFlow traceback to find out that a config key was misspelt.
"""
from __future__ import annotations


class KerasPruneError(Exception):
    """Base class: catch this to handle every kerasprune input error."""


class ConfigError(KerasPruneError, ValueError):
    """An experiment config or a function argument is invalid."""


class DataError(KerasPruneError):
    """A dataset is unknown, not prepared in the data dir, or malformed."""


class ModelError(KerasPruneError, TypeError):
    """A model is of the wrong kind (e.g. Keras 3) or has an unsupported layer."""


class ExportError(KerasPruneError):
    """A converted model does not reproduce the Keras model it came from."""


class TrainingError(KerasPruneError):
    """Training went wrong in a way the run cannot recover from (e.g. the loss became NaN)."""


class FileError(KerasPruneError, OSError):
    """A file cannot be written where asked: a folder in the way, a full or read-only disk."""
