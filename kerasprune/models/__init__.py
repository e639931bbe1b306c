"""The model zoo: tf_keras functional models by name, built to fit a dataset.

``build("lenet5", input_shape=(28, 28, 1), num_classes=10)`` or, with a loaded dataset,
``build_for(data, "textcnn", filters=64)``.  Keyword arguments are the builder's own
(``width`` for vision models, sizes for text models) and are checked by name.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Literal

from ..backend import keras
from ..checks import number
from ..errors import ConfigError
from . import text, vision
from .text import PositionEmbedding


@dataclass(frozen=True)
class ZooEntry:
    build: Callable[..., keras.Model]
    kind: Literal["image", "text"]


ZOO: dict[str, ZooEntry] = {
    "lenet5": ZooEntry(vision.lenet5, "image"),
    "lenet_300_100": ZooEntry(vision.lenet_300_100, "image"),
    "mnist_cnn": ZooEntry(vision.mnist_cnn, "image"),
    "resnet20": ZooEntry(vision.resnet_cifar(20), "image"),
    "resnet56": ZooEntry(vision.resnet_cifar(56), "image"),
    "resnet18": ZooEntry(vision.resnet18, "image"),
    "resnet50": ZooEntry(vision.resnet50, "image"),
    "mobilenetv2": ZooEntry(vision.mobilenetv2, "image"),
    "lstm": ZooEntry(text.lstm, "text"),
    "bilstm": ZooEntry(text.bilstm, "text"),
    "textcnn": ZooEntry(text.textcnn, "text"),
    "transformer": ZooEntry(text.transformer, "text"),
}


def build(
    name: str,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    vocab_size: int | None = None,
    **kwargs,
) -> keras.Model:
    """Build zoo model ``name``; text models take ``input_shape=(seq_len,)`` and ``vocab_size``."""
    entry = _entry(name)
    check_arguments(name, kwargs)
    if entry.kind == "text":
        if vocab_size is None or len(input_shape) != 1:
            raise ConfigError(
                f"model '{name}' reads token ids: pass input_shape=(seq_len,) and vocab_size "
                f"(got input_shape={input_shape}, vocab_size={vocab_size})."
            )
        return entry.build(input_shape[0], vocab_size, num_classes, **kwargs)
    return entry.build(tuple(input_shape), num_classes, **kwargs)


def build_for(data, name: str, **kwargs) -> keras.Model:
    """Build zoo model ``name`` for a ``kerasprune.data.Data``, checking that the kinds match."""
    entry = _entry(name)
    if entry.kind != data.kind:
        fitting = sorted(n for n, e in ZOO.items() if e.kind == data.kind)
        raise ConfigError(
            f"model '{name}' takes {entry.kind} inputs but dataset '{data.name}' is "
            f"{data.kind}; models for it: {', '.join(fitting)}."
        )
    vocab_size = len(data.vocabulary) if data.vocabulary is not None else None
    return build(name, input_shape=data.input_shape, num_classes=data.num_classes,
                 vocab_size=vocab_size, **kwargs)


def _entry(name: str) -> ZooEntry:
    if name not in ZOO:
        raise ConfigError(f"unknown model '{name}'; the zoo has {', '.join(sorted(ZOO))}.")
    return ZOO[name]


def check_arguments(name: str, kwargs: dict) -> None:
    """ConfigError unless ``name`` is in the zoo and takes every keyword in ``kwargs``."""
    entry = _entry(name)
    fixed = {"input_shape", "num_classes", "seq_len", "vocab_size"}
    accepted = [p for p in inspect.signature(entry.build).parameters if p not in fixed]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(
            f"model '{name}' has no argument(s) {', '.join(unknown)}; it accepts "
            f"{', '.join(accepted) or 'none'}."
        )
    defaults = {k: p.default for k, p in inspect.signature(entry.build).parameters.items()}
    for key, value in kwargs.items():
        default = defaults[key]
        if key == "dropout":
            number(value, f"model '{name}' {key}", low=0.0, high=1.0, high_open=True)
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            number(value, f"model '{name}' {key}", low=0.0, low_open=True,
                   integer=isinstance(default, int))


def vocabulary_size(model: keras.Model) -> int | None:
    """The smallest ``input_dim`` of the model's embeddings: the token ids it can take."""
    sizes = [layer.input_dim for layer in model.layers if isinstance(layer, keras.layers.Embedding)]
    return min(sizes) if sizes else None


__all__ = ["ZOO", "PositionEmbedding", "build", "build_for", "check_arguments", "vocabulary_size"]
