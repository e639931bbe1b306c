"""Keras callbacks for pruning runs: the adaptive pruner, the best sparse epoch, sparsity logs."""
from __future__ import annotations

import json
import math
import shutil
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np

from .. import files, metrics
from ..backend import keras
from ..checks import number, path
from ..errors import ConfigError
from .masks import MaskMover, require_single_steps
from .prune import model_sparsity
from .schedules import ACTION_CODES, FeedbackSchedule, FeedbackState, higher_is_better
from .state import read_state, write_state


class SparsityHistory(keras.callbacks.Callback):
    """Adds the model's global sparsity to the epoch logs, so History and TensorBoard get it."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["sparsity"] = metrics.global_sparsity(self.model)


class KeepBest(keras.callbacks.Callback):
    """When ``fit`` ends, restore the weights of the best epoch at the target sparsity.

    Keras' ``EarlyStopping(restore_best_weights=True)`` would hand back an early, denser
    epoch of a pruning run; here only epochs that end with at least ``min_sparsity``
    compete (at most 1% more nonzeros, for per-layer rounding), judged by ``monitor`` on
    the validation data.  The best weights (masks included) are kept in ``folder``, written
    atomically with their epoch and metric, so a run resumed by ``BackupAndRestore``
    still knows them.  The sparsity is the whole model's, as reports measure it
    (:func:`kerasprune.metrics.global_sparsity`: every weight of rank 2 or more, pruned or
    not), so with only some layers pruned it is below their masks' level.  ``best_epoch``
    is None when no epoch reached it; the model then ends on its last epoch, and says so.  Put it
    before callbacks that change weights at epoch end (``AdaptivePruning``), so what it
    keeps is what was validated.
    """

    def __init__(self, folder: str | Path, monitor: str = "val_accuracy", mode: str = "auto",
                 min_sparsity: float = 0.0) -> None:
        super().__init__()
        self.folder, self.monitor = path(folder, "KeepBest(folder=)"), monitor
        self.min_sparsity = number(min_sparsity, "KeepBest(min_sparsity=)", low=0.0, high=1.0,
                                   high_open=True)
        self.higher = higher_is_better(monitor, mode)
        self.best_epoch: int | None = None
        self.best: float = math.nan
        self._most = 0.0  # the highest sparsity an epoch of this fit ended at

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._most = 0.0
        meta = files.recover_folder(self.folder) / "best.json"
        if meta.is_file():  # a resumed run: the best so far survives the kill
            saved = json.loads(meta.read_text())
            self.best_epoch, self.best = saved["epoch"], saved["metric"]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if self.monitor not in logs:
            raise ConfigError(f"KeepBest monitors '{self.monitor}', which is not in the epoch logs "
                              f"({', '.join(sorted(logs)) or 'none'}); pass validation_data to fit().")
        sparsity = logs.get("sparsity", metrics.global_sparsity(self.model))
        value = float(logs[self.monitor])
        self._most = max(self._most, sparsity)
        if 1.0 - sparsity > (1.0 - self.min_sparsity) * 1.01 or math.isnan(value):
            return
        if self.best_epoch is None or (value > self.best if self.higher else value < self.best):
            with files.atomic_path(self.folder, folder=True) as tmp:
                tmp.mkdir()
                self.model.save_weights(str(tmp / "weights.h5"))
                (tmp / "best.json").write_text(json.dumps({"epoch": epoch, "metric": value}))
            self.best_epoch, self.best = epoch, value

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.best_epoch is not None:
            self.model.load_weights(str(self.folder / "weights.h5"))
            shutil.rmtree(self.folder, ignore_errors=True)
        else:
            print(f"  KeepBest: no epoch ended at sparsity {self.min_sparsity:g} (the whole model's; "
                  f"the highest was {self._most:.3f}), so the model ends on its last epoch.",
                  file=sys.stderr, flush=True)


class LastGood:
    """The model's weights (masks and controller state included) at the last finite epoch.

    Every pruning controller keeps one: when the loss turns NaN or Inf it restores this
    and stops, instead of pruning on NaN scores and stripping a NaN model.
    """

    def __init__(self) -> None:
        self.weights: list[np.ndarray] | None = None
        self.epoch = -1  # -1: as the model was when fit() started

    def save(self, model: keras.Model, epoch: int) -> None:
        self.weights, self.epoch = model.get_weights(), epoch

    def restore(self, model: keras.Model) -> None:
        if self.weights is not None:
            model.set_weights(self.weights)


def check_monitor(model: keras.Model, monitor: str, where: str) -> None:
    """Refuse at ``on_train_begin`` a monitor that no compiled loss or metric will log.

    Only flat metric lists are checked (a multi-output model prefixes its names); whether
    ``val_`` logs exist depends on ``validation_data``, known only at the first epoch end.
    """
    compiled = getattr(model, "compiled_metrics", None)
    user = []
    for given in (getattr(compiled, "_user_metrics", None), getattr(compiled, "_user_weighted_metrics", None)):
        if isinstance(given, dict):  # by output name: its one output's metrics
            given = [m for value in given.values() for m in (value if isinstance(value, (list, tuple)) else [value])]
        user += list(given or [])
    if len(model.outputs or []) != 1 or not all(isinstance(m, (str, keras.metrics.Metric)) or callable(m)
                                                 for m in user):
        return
    names = {"loss", *(m if isinstance(m, str) else getattr(m, "name", None) or m.__name__ for m in user),
             *(m.name for m in model.metrics)}
    if monitor.removeprefix("val_") not in names:
        raise ConfigError(
            f"{where} monitors '{monitor}', but the model logs only {', '.join(sorted(names))} "
            f"(and their val_ versions with validation_data); fix monitor= or compile the model "
            "with that metric.")


#: the FeedbackSchedule settings AdaptivePruning accepts as keyword arguments
SCHEDULE_ARGS = tuple(f.name for f in fields(FeedbackSchedule) if f.name not in ("state", "higher_is_better"))


class AdaptivePruning(keras.callbacks.Callback):
    """Prune a ``kerasprune.prune``-d model during ``fit``, paced by validation feedback.

    At each epoch end the :class:`~kerasprune.sparsity.schedules.FeedbackSchedule` reads the
    monitored metric and steps sparsity up, holds it, or rolls the last step back (the
    previous masks come back).  A step is not taken at once: the masks move toward the
    new level every ``frequency`` batches of the next epoch and reach it at its end, since
    removing many weights in one jump costs accuracy that small steps do not; ``ramp``
    sets the path (see :func:`~kerasprune.sparsity.schedules.ramp_level`).  With ``rewire`` the
    masks are chosen again every ``frequency`` batches while the level holds, pruned
    weights competing with live ones on their scores (``revive`` in
    :func:`~kerasprune.sparsity.allocation.allocate`): the connections can move to where the loss
    needs them, which a mask fixed at the end of the ramp cannot (MNIST LeNet-5 at 98%:
    0.9781 -> 0.9811).  It is meant for Taylor importance.  Masks are
    chosen by ``importance`` (Taylor scores collected by the wrappers, weighted toward the
    last epoch, by default) over ``scope``.

    Each decision is kept in ``decisions`` and added to the epoch logs as
    ``pruning_target`` and ``pruning_action`` (0 none, 1 step, 2 hold, 3 rollback, 4 done),
    and with ``rewire`` ``pruning_revived`` (weights revived during the epoch),
    so History, CSVLogger and TensorBoard record it: put this callback before them, and
    before ``BackupAndRestore``/``ModelCheckpoint`` so the checkpoint holds the new masks.
    The schedule state lives in the model's weights (:mod:`.state`), so a resumed run continues.
    """

    def __init__(self, schedule=None, *, importance="taylor", scope="global",
                 monitor: str = "val_accuracy", monitor_mode: str = "auto",
                 min_density: float = 0.005, normalize: bool = False, frequency: int = 100,
                 ramp: str = "geometric", rewire: bool = False, verbose: int = 1,
                 **schedule_args) -> None:
        super().__init__()
        if schedule is not None and schedule_args:
            raise ConfigError("AdaptivePruning: pass either a FeedbackSchedule or its arguments "
                              f"({', '.join(sorted(schedule_args))}), not both.")
        unknown = sorted(set(schedule_args) - set(SCHEDULE_ARGS))
        if unknown:
            raise ConfigError(f"AdaptivePruning got unknown argument(s) {', '.join(unknown)}; it "
                              f"takes its own and FeedbackSchedule's: {', '.join(SCHEDULE_ARGS)}.")
        if schedule is not None and not isinstance(schedule, FeedbackSchedule):
            raise ConfigError(f"AdaptivePruning(schedule=) must be a FeedbackSchedule, got "
                              f"{type(schedule).__name__}.")
        if not isinstance(monitor, str) or not monitor:
            raise ConfigError(f"AdaptivePruning(monitor=) must be the name of an epoch log, e.g. "
                              f"'val_accuracy' or 'val_loss', got {monitor!r}.")
        direction = higher_is_better(monitor, monitor_mode)
        if schedule is not None and schedule.higher_is_better != direction:
            raise ConfigError(
                f"AdaptivePruning monitors '{monitor}', which is better {'higher' if direction else 'lower'}, "
                f"but its FeedbackSchedule was made with higher_is_better={schedule.higher_is_better}; "
                f"make it with higher_is_better={direction}, or pass its settings to AdaptivePruning.")
        self.schedule = schedule or FeedbackSchedule(higher_is_better=direction, **schedule_args)
        self.masks = MaskMover(importance, scope, min_density, normalize, frequency, ramp, rewire,
                               where="AdaptivePruning")
        self.monitor, self.verbose = monitor, verbose
        self.decisions: list[dict] = []
        self.diverged: dict | None = None  # where the loss stopped being finite, if it did
        self._last_good = LastGood()
        self._epoch = 0
        self._state_loaded = False
        self._epoch_length = 0  # batches of the longest epoch seen, when Keras does not know

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.masks.wrappers(self.model)
        require_single_steps(self.model, "AdaptivePruning")
        check_monitor(self.model, self.monitor, "AdaptivePruning")
        self._state_loaded = False  # read after BackupAndRestore has restored the weights
        self.diverged = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch
        if not self._state_loaded:
            # The model's weights say where the schedule is: started (a resumed run, or a
            # second fit() of the same model) or fresh (then forget any earlier model's run).
            self.schedule.state = read_state(self.model, "feedback", FeedbackState) or FeedbackState()
            self._epoch_length = int(self.schedule.state.epoch_length)
            self.decisions = []
            self._state_loaded = True
            self._last_good.save(self.model, epoch - 1)
        self.masks.begin_epoch(self.model, self.schedule.state.level)  # a step decided last epoch

    def _steps(self) -> int:
        """Batches per epoch: from Keras, or counted in the epochs seen so far."""
        return self.params.get("steps") or self._epoch_length

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if self.diverged or (loss is not None and not math.isfinite(float(loss))):
            if not self.diverged:
                self._diverge(f"batch {batch + 1} of epoch {self._epoch + 1}", float(loss))
            return
        self.masks.after_batch(self.model, self._steps(), self.schedule.state.level)

    def on_train_end(self, logs: dict | None = None) -> None:
        self.masks.finish(self.model)  # the model ends at the level last decided

    def _diverge(self, where: str, value: float) -> None:
        """Roll back to the last finite epoch and stop: NaN weights would strip to a NaN model."""
        self.masks.stop()
        self._last_good.restore(self.model)
        self.model.stop_training = True
        self.diverged = {"epoch": self._epoch, "where": where, "loss": value,
                         "restored_epoch": self._last_good.epoch}
        kept = (f"the weights, masks and schedule of the end of epoch {self._last_good.epoch + 1}"
                if self._last_good.epoch >= 0 else "the weights and masks it started with")
        print(f"  AdaptivePruning: the training loss is {value} at {where}; restored {kept} "
              f"(sparsity {model_sparsity(self.model):.3f}) and stopped training. Lower the "
              "learning rate, clip gradients (e.g. optimizer clipnorm=1.0) or check the data "
              "for NaN/Inf, then fit again.", file=sys.stderr, flush=True)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        if self.diverged:
            return
        bad = {k: logs[k] for k in ("loss", "val_loss") if k in logs and not math.isfinite(logs[k])}
        if bad:
            self._diverge(f"the end of epoch {epoch + 1} ({', '.join(bad)})", float(next(iter(bad.values()))))
            return
        if self.monitor not in logs:
            raise ConfigError(
                f"AdaptivePruning monitors '{self.monitor}', which is not in the epoch logs "
                f"({', '.join(sorted(logs)) or 'none'}); pass validation_data to fit() or "
                "choose another monitor=."
            )
        found = self.masks.wrappers(self.model)
        self._epoch_length = max(self._epoch_length, self.masks.batches)
        self.schedule.state.epoch_length = float(self._epoch_length)  # saved for a resumed run
        self.masks.finish(self.model)  # only left when Keras did not know the epoch's length
        decision = self.schedule.update(epoch, float(logs[self.monitor]), self.params.get("epochs"))
        if decision.action == "step":
            self.masks.step(self.model, self.schedule.state.previous_level, decision.sparsity,
                            self._steps())
        elif decision.action == "rollback":
            for wrapper in found:
                wrapper.restore_previous_masks()
        self.masks.decay_scores(self.model)
        write_state(self.model, "feedback", self.schedule.state)
        logs["pruning_target"] = decision.sparsity
        logs["pruning_action"] = float(ACTION_CODES[decision.action])
        if self.masks.rewire:
            logs["pruning_revived"] = float(self.masks.revived)
        self.decisions.append(decision.as_dict())
        self._last_good.save(self.model, epoch)
        if self.verbose and decision.action not in ("none", "done"):
            print(f"  AdaptivePruning epoch {epoch + 1}: {decision.action} -> sparsity "
                  f"{decision.sparsity:.3f} ({self.monitor} {decision.metric:.4f}, reference "
                  f"{decision.reference:.4f}; {decision.reason})", flush=True)
