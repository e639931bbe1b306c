"""Argument checks shared by the API, the callbacks and the config loader.

Python compares ``"0.8" < 1`` with a bare TypeError and takes ``True`` for 1, so every
number a user hands kerasprune goes through :func:`number`, which names the argument,
the range and the value it got.
"""
from __future__ import annotations

import math
import numbers
import os
from pathlib import Path

from .errors import ConfigError


def number(value: object, name: str, *, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False, integer: bool = False,
           finite: bool = True) -> float:
    """``value`` as a float (an int with ``integer``) if it is a number in range, finite
    unless ``finite=False`` lets infinity mean "no bound" (a tolerance); never NaN.

    ``name`` says where it comes from (``"AdaptivePruning(final=...)"``, a config path),
    so the error can say what to change.
    """
    kind = "a whole number" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or (
            integer and not float(value).is_integer()):
        raise ConfigError(f"{name} must be {kind}{_range(low, high, low_open, high_open)}, "
                          f"got {value!r} ({type(value).__name__}).")
    out = float(value)
    below = low is not None and (out <= low if low_open else out < low)
    above = high is not None and (out >= high if high_open else out > high)
    if math.isnan(out) or (finite and math.isinf(out)) or below or above:  # inf overflows what it sizes
        raise ConfigError(f"{name} must be {kind}{_range(low, high, low_open, high_open)}, got {value!r}.")
    return int(out) if integer else out


def seed(value: object, name: str) -> int:
    """``value`` if it is a seed TensorFlow and NumPy both take: a whole number in [0, 2**32),
    kept as given (a float would round a large one)."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or not 0 <= value < 2**32:
        raise ConfigError(f"{name} must be an integer from 0 to 2**32 - 1, got {value!r}.")
    return int(value)


def path(value: object, name: str) -> Path:
    """``value`` as a Path if it is a string or path-like, else a ConfigError."""
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise ConfigError(f"{name} must be a file or folder path, got {value!r}.")
    return Path(value)


def flag(value: object, name: str) -> bool:
    """``value`` if it is a boolean (not 1, "yes" or None), else a ConfigError."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}.")
    return value


def choice(value: object, name: str, options: tuple[str, ...]) -> str:
    """``value`` if it is one of ``options``, else a ConfigError that lists them."""
    if not isinstance(value, str) or value not in options:
        raise ConfigError(f"{name} must be one of {', '.join(options)}, got {value!r}.")
    return value


def _range(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is None and high is None:
        return ""
    if high is None:
        return f" {'>' if low_open else '>='} {low:g}"
    if low is None:
        return f" {'<' if high_open else '<='} {high:g}"
    return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def block(value: object, where: str, allowed: set[str], example: str) -> dict:
    """A config block: a mapping whose keys are all in ``allowed`` (else a ConfigError)."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping such as {example}, got {value!r}.")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {', '.join(unknown)}; it takes "
                          f"{', '.join(sorted(allowed))}.")
    return value
