"""The random state of ``Dropout`` and other random layers, kept so a killed run resumes exactly.

tf_keras' random layers draw by default from TensorFlow's global stateful ops, whose state
no checkpoint holds: a run resumed by ``BackupAndRestore`` drops other units than the
unbroken run would have, and ends on other weights.  Built inside :func:`layer_generators`,
they draw from a ``tf.random.Generator`` instead (``rng_type="stateful"``, which their saved
config keeps); tf_keras leaves its state out of checkpoints on purpose, for compatibility,
so :class:`RandomState` saves it beside the backup at every epoch's end and puts it back
when the run resumes.  Both together (and deterministic ops) resume a run bit for bit.

The generator is another random stream than the global ops': a model built with it trains
differently from the same seed without it, which is why the switch is the caller's.
"""
from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from .backend import keras, tf
from .files import write_json

_RATES = ("rate", "dropout", "recurrent_dropout", "stddev")  # what makes a random layer draw
_KEPT_EPOCHS = 2  # the backup may hold either of the last two epochs when a kill lands between the writes


@contextlib.contextmanager
def layer_generators(enabled: bool = True) -> Iterator[None]:
    """Random layers built (or loaded) inside draw from a generator whose state
    :class:`RandomState` can keep; with ``enabled=False`` from the global ops, as by default
    (a model saved with a generator keeps it when loaded: its layers' config says so)."""
    switch = keras.backend.experimental
    before = switch.is_tf_random_generator_enabled()

    def turn(on: bool) -> None:
        (switch.enable_tf_random_generator if on else switch.disable_tf_random_generator)()

    turn(enabled)
    try:
        yield
    finally:
        turn(before)


def _random_layers(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """``model``'s random layers (nested models included), keyed by their place and class:
    Keras' automatic names (``lstm_1``) depend on what the process built before."""
    found = [layer for layer in model._flatten_layers(include_self=False)
             if getattr(layer, "_random_generator", None) is not None]  # tf_keras keeps it private
    return {f"{i}:{type(layer).__name__}": layer for i, layer in enumerate(found)}


def _draws(layer: keras.layers.Layer) -> bool:
    """False for a random layer whose rates are all zero (an LSTM without dropout)."""
    rates = [getattr(layer, name) for name in _RATES if hasattr(layer, name)]
    return not rates or any(rates)


def generators(model: keras.Model) -> dict[str, tf.random.Generator]:
    """The built generators of ``model``'s random layers, keyed as :func:`_random_layers`."""
    found = {key: getattr(layer._random_generator, "_generator", None)
             for key, layer in _random_layers(model).items()}
    return {key: g for key, g in found.items() if isinstance(g, tf.random.Generator)}


class RandomState(keras.callbacks.Callback):
    """Save the random layers' generator states in ``path`` after every epoch; put them back
    when a run starts past its first epoch (a run resumed by ``BackupAndRestore``).

    One file per run, as ``BackupAndRestore`` has one folder; a run that starts at epoch 0
    starts it afresh.  List it before ``BackupAndRestore``: its state for an epoch is then
    written first, and whichever of the last two epochs the backup holds, the matching state
    is here.  Epoch-granular, like the harness' backups: a backup saved every few steps
    resumes mid-epoch on the state of the epoch's start.  A resumed run without the state
    (the file lost, or the model built outside :func:`layer_generators`) trains on, with a
    warning that it is not reproduced exactly.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self._kept: dict[str, dict[str, list[int]]] | None = None  # epoch -> layer key -> state

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._kept = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self._kept is not None:
            return
        saved = json.loads(self.path.read_text())["epochs"] if epoch and self.path.is_file() else {}
        self._kept = {k: v for k, v in saved.items() if int(k) <= epoch}  # not a later run's
        if epoch:
            self._restore(epoch, self._kept.get(str(epoch), {}))

    def _restore(self, epoch: int, state: dict[str, list[int]]) -> None:
        random, live = _random_layers(self.model), generators(self.model)
        legacy = [layer.name for key, layer in random.items() if key not in live and _draws(layer)]
        missing = [random[key].name for key in live if key not in state and _draws(random[key])]
        if legacy:
            warnings.warn(f"training starts at epoch {epoch + 1}, and {', '.join(legacy)} draw from "
                          "TensorFlow's global random state, which no checkpoint holds: if this run "
                          "resumes a killed one, they drop other units than it would have. "
                          "Build the model inside kerasprune.random_state.layer_generators() (in an "
                          "experiment: `exact_resume: true`) to resume exactly.")
        if missing:
            held = ", ".join(sorted(self._kept, key=int)) or "none"
            warnings.warn(f"training starts at epoch {epoch + 1} without the random state of "
                          f"{', '.join(missing)} in {self.path} (it holds epochs {held}): if this run "
                          "resumes a killed one, they drop other units than it would have, so it is "
                          "not reproduced exactly.")
        for key, generator in live.items():
            if key in state:
                generator.reset(np.asarray(state[key], dtype=generator.state.dtype.as_numpy_dtype))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        live = generators(self.model)
        if not live:
            return
        self._kept[str(epoch + 1)] = {key: g.state.numpy().tolist() for key, g in live.items()}
        newest = sorted(self._kept, key=int)[-_KEPT_EPOCHS:]
        self._kept = {k: self._kept[k] for k in newest}
        write_json(self.path, {"epochs": self._kept})
