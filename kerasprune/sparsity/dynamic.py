"""Dynamic sparse training: a network sparse from its first step that moves its connections.

``DynamicSparsity`` sets random masks on a ``prune``-d model before the first batch (each
kernel's nonzeros from :func:`~kerasprune.sparsity.densities.densities`, uniform or ERK),
then every ``update_every`` batches drops a fraction of each kernel's live weights, the
smallest in magnitude, and regrows as many among the dead ones:

* ``static``: never (the masks of the first step stay; the control);
* ``set``: at random (Mocanu et al. 2018, Sparse Evolutionary Training);
* ``rigl``: where the dense gradient ``|dL/dw|`` of the update batch is largest (Evci et
  al. 2020).  The wrappers capture it only on update batches
  (``prune(model, track_gradients=True)``); with ``gradient_batches`` it is summed over
  that many batches ending with the update's, so that regrowth sees more of the data
  than one batch: an embedding's gradient reaches only the rows its batch looked up
  (rigl-torch's gradient accumulation).

An embedding's gradient reaches only the rows its batch looked up, largest for the most
frequent tokens, so RigL's regrowth drifts the layer's nonzeros toward them and away from
the rarer ones.  With ``per_row`` an embedding row (one token's vector) regrows as many
weights as it dropped, within itself, by gradient (RigL) or at random (SET): each token
keeps its number of nonzeros.  RigL then drops only in the rows its gradient reached: the
others were not looked up, so neither their magnitudes (still as initialised, or as last
trained) nor a zero gradient say where they should grow.  Other kernels move as before.
Off by default: on SST-2 it cost RigL two points at 80% and gained nothing beyond the
noise at 90% (the README's dynamic sparse results).

With ``sparse_init`` the first step's live weights are scaled by ``1/sqrt(density)`` per
kernel, so a layer's output starts with the variance a dense initializer meant for it
(the layer-scaled init of Evci et al. 2022, "Gradient Flow in Sparse Neural Networks",
which the RigL code offers); without it a 5%-dense layer starts with its outputs about
a fifth as large.  Embeddings, which look up rows rather than sum over inputs, are left
as drawn.

The fraction decays along a cosine from ``drop_fraction`` to zero at ``end_fraction`` of
the run's steps, after which the masks stay.  A regrown weight starts at zero and so does
its optimizer state (:mod:`.slots`); each kernel keeps its number of nonzeros, so the
model's is constant.  The masks are the wrappers' own and the step count lives in the
model's weights (:mod:`.state`), so ``BackupAndRestore`` resumes a killed run on the same
masks (it is written at every update and epoch end: keep BackupAndRestore's default
``save_freq="epoch"`` and put it after this callback); the random draws are seeded by
``seed`` and the update's index.  ``updates`` holds this process's updates; the count of
all of them, a resumed run's earlier ones included, is ``state.updates``.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np

from ..backend import keras
from ..checks import choice, flag, number
from ..errors import ConfigError, ModelError
from . import slots
from .densities import DISTRIBUTIONS, bounds, densities
from .masks import require_single_steps
from .prune import wrappers
from .state import FloatFields, read_state, write_state
from .wrapper import PruningWrapper

METHODS = ("static", "set", "rigl")


@dataclass
class DynamicState(FloatFields):
    step: float = 0.0  # training batches done since the masks were drawn
    updates: float = 0.0  # mask updates done


class DynamicSparsity(keras.callbacks.Callback):
    """Train at ``sparsity`` from the first step; ``method`` static, set or rigl.

    ``updates`` records each update (step, drop fraction, weights regrown, turnover: the
    regrown share of the live weights); the epoch logs get ``dst_turnover``, the mean
    turnover of the epoch's updates.
    """

    def __init__(self, sparsity: float = 0.5, *, method: str = "rigl", distribution: str = "erk",
                 drop_fraction: float = 0.2, update_every: int = 100, end_fraction: float = 0.75,
                 min_density: float = 0.02, max_density: float = 1.0, sparse_init: bool = False,
                 gradient_batches: int = 1, per_row: bool = False, seed: int = 0,
                 verbose: int = 1) -> None:
        super().__init__()
        where = "DynamicSparsity"
        self.sparsity = number(sparsity, f"{where}(sparsity=)", low=0.0, high=1.0, low_open=True,
                               high_open=True)
        self.method = choice(method, f"{where}(method=)", METHODS)
        self.distribution = choice(distribution, f"{where}(distribution=)", DISTRIBUTIONS)
        self.drop_fraction = number(drop_fraction, f"{where}(drop_fraction=)", low=0.0, high=1.0,
                                    high_open=True)
        self.update_every = number(update_every, f"{where}(update_every=)", low=1, integer=True)
        self.end_fraction = number(end_fraction, f"{where}(end_fraction=)", low=0.0, high=1.0)
        self.min_density, self.max_density = bounds(min_density, max_density, f"{where}: ")
        if self.min_density > 1.0 - self.sparsity:
            raise ConfigError(f"{where}: sparsity {self.sparsity:g} cannot be met with every kernel "
                              f"at least {self.min_density:g} dense; lower min_density below "
                              f"{1.0 - self.sparsity:g}.")
        self.sparse_init = flag(sparse_init, f"{where}(sparse_init=)")
        self.gradient_batches = number(gradient_batches, f"{where}(gradient_batches=)", low=1, integer=True)
        if self.gradient_batches > self.update_every:
            raise ConfigError(f"{where}: gradient_batches {self.gradient_batches} would sum gradients "
                              f"from before the previous update (one every {self.update_every} "
                              "batches); keep it at most update_every.")
        if self.gradient_batches > 1 and self.method != "rigl":
            raise ConfigError(f"{where}: gradient_batches sums the dense gradients RigL regrows by; "
                              f"method {self.method!r} uses none, so leave it at 1.")
        self.per_row = flag(per_row, f"{where}(per_row=)")
        if self.per_row and self.method == "static":
            raise ConfigError(f"{where}: per_row chooses where an update regrows; method 'static' "
                              "never updates, so leave it off.")
        self.seed, self.verbose = int(seed), verbose
        self.updates: list[dict] = []
        self.state = DynamicState()
        self._loaded, self._end_step, self._epoch_updates = False, 0, []

    # -- Keras hooks --

    def on_train_begin(self, logs: dict | None = None) -> None:
        found = self._wrappers()
        if self.method == "rigl" and not all(w.track_gradients for w in found):
            raise ModelError("DynamicSparsity(method='rigl') regrows by the dense gradient, which the "
                             "wrappers capture only with prune(model, track_gradients=True).")
        require_single_steps(self.model, "DynamicSparsity")
        steps, epochs = self.params.get("steps"), self.params.get("epochs")
        if not steps and self.method != "static":
            raise ConfigError("DynamicSparsity needs the epoch's length to place its updates: fit "
                              "a dataset of known length or pass steps_per_epoch.")
        self._end_step = int(self.end_fraction * (steps or 0) * (epochs or 0))
        self._loaded = False  # read at the first epoch, after BackupAndRestore has restored

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if not self._loaded:
            saved = read_state(self.model, "dynamic", DynamicState)
            if saved is None:
                self._draw_masks()
                self.state = DynamicState()
                write_state(self.model, "dynamic", self.state)
            else:
                self.state = saved
            self._loaded = True
        self._epoch_updates = []

    def _due(self, step: int) -> bool:
        """Whether training batch number ``step`` (counted from 1) is an update batch."""
        return self.method != "static" and step % self.update_every == 0 and step <= self._end_step

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        # the first batch of an update's gradient window clears the sums and starts them
        if self.method == "rigl" and self._due(int(self.state.step) + self.gradient_batches):
            for wrapper in self._wrappers():
                wrapper.capture_gradients(True)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        due = self._due(int(self.state.step) + 1)
        self.state.step += 1
        if due:
            self._update()
            write_state(self.model, "dynamic", self.state)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        write_state(self.model, "dynamic", self.state)
        turnover = float(np.mean(self._epoch_updates)) if self._epoch_updates else 0.0
        if logs is not None:
            logs["dst_turnover"] = turnover
        if self.verbose and self._epoch_updates:
            print(f"  DynamicSparsity epoch {epoch + 1}: {len(self._epoch_updates)} {self.method} "
                  f"updates, mean turnover {turnover:.3%}, drop fraction now "
                  f"{self._fraction(int(self.state.step)):.3f}", file=sys.stderr, flush=True)

    # -- the masks --

    def _wrappers(self) -> list[PruningWrapper]:
        found = wrappers(self.model)
        if not found:
            raise ModelError("DynamicSparsity: the model has no pruning wrappers; fit the model "
                             "returned by kerasprune.prune(model).")
        return found

    def _kernels(self) -> list[tuple[PruningWrapper, int]]:
        return [(w, i) for w in self._wrappers() for i in range(len(w.masks))]

    def _draw_masks(self) -> None:
        """Random masks with each kernel's nonzeros (the first step's, for every method)."""
        kernels = self._kernels()
        counts = densities([tuple(w.masks[i].shape) for w, i in kernels], self.sparsity,
                           self.distribution, self.min_density, self.max_density)
        rng = np.random.default_rng([self.seed, 0])
        drawn: dict[str, list[np.ndarray]] = {}
        for (wrapper, i), count in zip(kernels, counts):
            shape = tuple(wrapper.masks[i].shape)
            flat = np.zeros(int(np.prod(shape)), dtype=np.float32)
            flat[rng.choice(flat.size, size=count, replace=False)] = 1.0
            drawn.setdefault(wrapper.name, []).append(flat.reshape(shape))
            weight = wrapper.prunable[i]
            if self.sparse_init and not isinstance(weight.owner, keras.layers.Embedding):
                weight.variable.assign(weight.variable * math.sqrt(flat.size / count))
        for wrapper in self._wrappers():
            wrapper.set_masks(drawn[wrapper.name], keep_previous=False)
            wrapper.remember_masks()

    def _fraction(self, step: int) -> float:
        """The cosine-decayed share of live weights an update at ``step`` moves."""
        if step > self._end_step or self._end_step == 0:
            return 0.0
        return self.drop_fraction * (1.0 + math.cos(math.pi * step / self._end_step)) / 2.0

    def _update(self) -> None:
        step = int(self.state.step)
        fraction = self._fraction(step)
        rng = np.random.default_rng([self.seed, int(self.state.updates) + 1])
        regrown = live = 0
        for wrapper in self._wrappers():
            grads = wrapper.gradient_values() if self.method == "rigl" else None
            new_masks = []
            for i, weight in enumerate(wrapper.prunable):
                mask = wrapper.masks[i].numpy() != 0
                values = weight.variable.numpy()
                grow = grads[i] if grads is not None else rng.random(mask.shape)
                rows = self.per_row and isinstance(weight.owner, keras.layers.Embedding)
                new = _moved(mask, values, grow, int(fraction * mask.sum()), rng, rows=rows)
                born = new & ~mask
                if born.any():
                    weight.variable.assign(np.where(born, 0.0, values).astype(values.dtype))
                    slots.reset(self.model.optimizer, weight.variable, born)
                regrown, live = regrown + int(born.sum()), live + int(mask.sum())
                new_masks.append(new.astype(np.float32))
            wrapper.set_masks(new_masks, keep_previous=False)
            if self.method == "rigl":
                wrapper.capture_gradients(False)
        self.state.updates += 1
        turnover = regrown / live if live else 0.0
        self._epoch_updates.append(turnover)
        self.updates.append({"step": step, "drop_fraction": fraction, "regrown": regrown,
                             "turnover": turnover})


def _moved(mask: np.ndarray, values: np.ndarray, grow: np.ndarray, k: int,
           rng: np.random.Generator, rows: bool = False) -> np.ndarray:
    """``mask`` with its ``k`` smallest live weights dropped and the ``k`` dead (or just
    dropped) entries of largest ``grow`` alive; ties broken at random.  With ``rows``, only
    rows (along the first axis) with some nonzero ``grow`` drop, and each regrows as many as
    it dropped, its own largest."""
    if k <= 0:
        return mask
    flat, tie = mask.ravel(), rng.random(mask.size)
    live = np.flatnonzero(flat)
    width = mask.size // mask.shape[0]  # a row's entries
    if rows:
        live = live[np.asarray(grow).reshape(mask.shape[0], width).any(axis=1)[live // width]]
    dropped = live[np.lexsort((tie[live], np.abs(values.ravel()[live])))[:k]]
    after = flat.copy()
    after[dropped] = False
    dead = np.flatnonzero(~after)
    score = np.asarray(grow, dtype=np.float64).ravel()[dead]
    if rows:  # sorted by row, then score: each row's first entries, as many as it dropped
        order = np.lexsort((tie[dead], -score, dead // width))
        row = dead[order] // width
        rank = np.arange(order.size) - np.searchsorted(row, row)  # place within its row
        grown = dead[order[rank < np.bincount(dropped // width, minlength=mask.shape[0])[row]]]
    else:
        grown = dead[np.lexsort((tie[dead], -score))[:k]]
    after[grown] = True
    return after.reshape(mask.shape)


__all__ = ["METHODS", "DynamicSparsity", "DynamicState"]
