"""How a controller moves a pruned model's masks during ``fit``, whoever decides the level.

The feedback schedule (:class:`~kerasprune.sparsity.callbacks.AdaptivePruning`) decides
when sparsity steps; the RL agent will decide differently.  Both need the same mechanics,
which live here (dynamic sparse training, :mod:`.dynamic`, holds each kernel's count of
nonzeros fixed and moves its masks by its own drop-and-grow rule, on the same wrappers):

* a **ramp**: a new level is reached over the next epoch, the masks moving every
  ``frequency`` batches along :func:`~kerasprune.sparsity.schedules.ramp_level` and
  landing on the level at the epoch's last batch, before validation measures it;
* **rewiring**: at a fixed level the masks are chosen again every ``frequency`` batches,
  pruned weights competing with live ones on their scores (``revive`` in
  :func:`~kerasprune.sparsity.allocation.allocate`);
* **score decay**: the Taylor sums become an exponentially weighted mean.
"""
from __future__ import annotations

import numpy as np

from ..backend import keras
from ..checks import choice, flag, number
from ..errors import ConfigError, ModelError
from .allocation import SCOPES
from .importance import ImportanceLike
from .importance import get as get_importance
from .prune import model_sparsity, set_sparsity, wrappers
from .schedules import RAMPS, ramp_level
from .wrapper import PruningWrapper


def require_single_steps(model: keras.Model, where: str) -> None:
    """Refuse ``steps_per_execution`` > 1: Keras then calls the batch hooks once per several
    batches, so a controller counting batches would move its masks late (validation would
    see a half-made step)."""
    per_call = getattr(model, "_steps_per_execution", None)
    if per_call is not None and int(per_call.numpy()) != 1:
        raise ConfigError(f"{where} counts single batches: compile the model with "
                          "steps_per_execution=1 (the default).")


class MaskMover:
    """Ramps, rewires and decays the masks of one model, every ``frequency`` batches.

    Settings are checked here, when the controller is made, not at the first mask update.
    ``where`` names the controller in error messages.
    """

    def __init__(self, importance: ImportanceLike = "taylor", scope: str = "global",
                 min_density: float = 0.005, normalize: bool = False, frequency: int = 100,
                 ramp: str = "geometric", rewire: bool = False, where: str = "MaskMover") -> None:
        get_importance(importance)
        self.importance, self.scope = importance, choice(scope, f"{where}(scope=)", SCOPES)
        self.min_density = number(min_density, f"{where}(min_density=)", low=0.0, high=1.0)
        self.normalize = flag(normalize, f"{where}(normalize=)")
        self.frequency = number(frequency, f"{where}(frequency=)", low=1, integer=True)
        self.ramp = choice(ramp, f"{where}(ramp=)", RAMPS)
        self.rewire, self.where = flag(rewire, f"{where}(rewire=)"), where
        self.revived = 0  # weights revived by rewiring since the epoch began
        self._ramp: tuple[float, float] | None = None  # (from, to) sparsity over this epoch
        self._batches = 0

    def wrappers(self, model: keras.Model) -> list[PruningWrapper]:
        found = wrappers(model)
        if not found:
            raise ModelError(f"{self.where}: the model has no pruning wrappers; fit the model "
                             "returned by kerasprune.prune(model).")
        return found

    @property
    def ramping(self) -> bool:
        return self._ramp is not None

    def begin_epoch(self, model: keras.Model, level: float) -> None:
        """Ramp toward ``level`` in this epoch if the masks lag it (a resumed ramp too).

        A level short by less than one weight is the rounding of an exact mask, not a lag.
        """
        current = model_sparsity(model)
        weights = sum(m.shape.num_elements() for w in self.wrappers(model) for m in w.masks)
        self._ramp = (current, level) if (level - current) * weights >= 1 else None
        self._batches = self.revived = 0

    def after_batch(self, model: keras.Model, steps: int, level: float) -> None:
        """One batch done of an epoch of ``steps`` (0: unknown): move the masks if due."""
        self._batches += 1
        if self._ramp is not None:
            if steps and (self._batches % self.frequency == 0 or self._batches >= steps):
                start, end = self._ramp
                self.mask_to(model, ramp_level(start, end, self._batches / steps, self.ramp))
                if self._batches >= steps:  # at the level before validation measures the epoch
                    self._ramp = None
        elif self.rewire and level > 0 and self._batches % self.frequency == 0:
            before = [m.numpy() != 0 for w in self.wrappers(model) for m in w.masks]
            self.mask_to(model, level, revive=True)
            after = [m.numpy() != 0 for w in self.wrappers(model) for m in w.masks]
            self.revived += sum(int(np.sum(a & ~b)) for a, b in zip(after, before))

    @property
    def batches(self) -> int:
        """Batches seen since the epoch began."""
        return self._batches

    def step(self, model: keras.Model, start: float, level: float, steps: int) -> None:
        """Go from ``start`` to ``level``: over the next epoch, or at once when it has too
        few batches to ramp.  The current masks become the rollback point."""
        for wrapper in self.wrappers(model):
            wrapper.remember_masks()
        if steps > self.frequency:
            self._ramp = (start, level)
        else:
            self.mask_to(model, level)

    def finish(self, model: keras.Model) -> None:
        """Land an unfinished ramp on its level (when Keras did not know the epoch's length)."""
        if self._ramp is not None:
            self.mask_to(model, self._ramp[1])
            self._ramp = None

    def stop(self) -> None:
        """Forget the ramp: the masks stay where they are (a diverged run restored them)."""
        self._ramp = None

    def mask_to(self, model: keras.Model, level: float, revive: bool = False) -> None:
        set_sparsity(model, level, self.importance, self.scope, self.min_density,
                     self.normalize, keep_previous=False, revive=revive)

    def decay_scores(self, model: keras.Model, factor: float = 0.5) -> None:
        """Weigh older batches less.  With 0.5 at every epoch end the scores are a mean with
        a half-life of one epoch: recent enough to follow the network, long enough that every
        row of an embedding seen in the last epoch has one (a window of a few batches would
        prune unseen words)."""
        for wrapper in self.wrappers(model):
            wrapper.decay_scores(factor)
