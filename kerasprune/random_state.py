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
    :class:`RandomState` can keep (with ``enabled=False``: from the global ops, as by default)."""
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
    """``model``'s random layers (nested models included) by name, a repeated name numbered."""
    found: dict[str, keras.layers.Layer] = {}
    for layer in model._flatten_layers(include_self=False):
        if getattr(layer, "_random_generator", None) is not None:  # tf_keras keeps it private
            name, k = layer.name, 1
            while name in found:
                name, k = f"{layer.name}#{k}", k + 1
            found[name] = layer
    return found


def _draws(layer: keras.layers.Layer) -> bool:
    """False for a random layer whose rates are all zero (an LSTM without dropout)."""
    rates = [getattr(layer, name) for name in _RATES if hasattr(layer, name)]
    return not rates or any(rates)


def generators(model: keras.Model) -> dict[str, tf.random.Generator]:
    """The built generators of ``model``'s random layers, by layer name."""
    found = {name: getattr(layer._random_generator, "_generator", None)
             for name, layer in _random_layers(model).items()}
    return {name: g for name, g in found.items() if isinstance(g, tf.random.Generator)}


class RandomState(keras.callbacks.Callback):
    """Save the random layers' generator states in ``path`` after every epoch; put them back
    on a resumed run's first epoch.

    List it before ``BackupAndRestore``: its state for an epoch is then written first, and
    whichever of the last two epochs the backup holds, the matching state is here.  A
    resumed run without it (the file lost, or the model built outside
    :func:`layer_generators`) trains on, with a warning that it is no longer exact.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self._first = True

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._first = True

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if not self._first:
            return
        self._first = False
        if epoch == 0:
            return
        layers, random = generators(self.model), _random_layers(self.model)
        legacy = sorted(name for name, layer in random.items() if name not in layers and _draws(layer))
        if legacy:
            warnings.warn(f"resuming at epoch {epoch + 1}: {', '.join(legacy)} "
                          "draw from TensorFlow's global random state, which no checkpoint holds, so "
                          "they drop other units than an unbroken run would have. Build the model "
                          "inside kerasprune.random_state.layer_generators() (in an experiment: "
                          "`exact_resume: true`) to resume exactly.", stacklevel=2)
        saved = self._saved().get(str(epoch))
        if layers and (saved is None or set(saved) != set(layers)):
            warnings.warn(f"resuming at epoch {epoch + 1} without the random layers' state for it "
                          f"({self.path} holds epochs {sorted(self._saved(), key=int) or 'none'}): "
                          f"{', '.join(sorted(layers))} drop other units than an unbroken run "
                          "would have, so the run is not reproduced exactly.", stacklevel=2)
            return
        for name, generator in layers.items():
            generator.reset(np.asarray(saved[name], dtype=generator.state.dtype.as_numpy_dtype))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        layers = generators(self.model)
        if not layers:
            return
        kept = self._saved()
        kept[str(epoch + 1)] = {name: g.state.numpy().tolist() for name, g in layers.items()}
        newest = sorted(kept, key=int)[-_KEPT_EPOCHS:]
        write_json(self.path, {"epochs": {k: kept[k] for k in newest}})

    def _saved(self) -> dict[str, dict[str, list[int]]]:
        if not self.path.is_file():
            return {}
        return json.loads(self.path.read_text())["epochs"]
