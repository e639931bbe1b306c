"""Compile and fit a model as an experiment phase (``train`` or ``finetune``) describes it."""
from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

from .. import files
from ..backend import keras, tf
from ..data import Data
from ..distillation import DistillationLoss, LabelAccuracy, with_teacher
from ..errors import ModelError, TrainingError
from ..random_state import RandomState
from ..sparsity.callbacks import KeepBest, SparsityHistory
from .progress import EpochProgress, StepTimer
from .spec import TrainSpec


def compile_for(model: keras.Model, spec: TrainSpec, steps_per_epoch: int) -> keras.Model:
    """Compile with the phase's optimizer and schedule (cosine decays to 0 over the phase)."""
    lr: float | keras.optimizers.schedules.LearningRateSchedule = spec.learning_rate
    clip = {"clipnorm": spec.clipnorm} if spec.clipnorm else {}
    if spec.schedule == "cosine" and spec.epochs > 0:
        lr = keras.optimizers.schedules.CosineDecay(spec.learning_rate, steps_per_epoch * spec.epochs)
    if spec.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(lr, momentum=spec.momentum, nesterov=True,
                                         weight_decay=spec.weight_decay or None, **clip)
    elif spec.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(lr, weight_decay=spec.weight_decay, **clip)
    else:
        optimizer = keras.optimizers.Adam(lr, **clip)
    # a distilled phase's targets carry the teacher's outputs after the labels
    loss, accuracy = ((DistillationLoss(spec.distill, spec.temperature), LabelAccuracy()) if spec.distill
                      else (keras.losses.SparseCategoricalCrossentropy(), "accuracy"))
    model.compile(optimizer=optimizer, loss=loss, metrics=[accuracy])
    return model


def steps_per_epoch(data: Data) -> int:
    n = int(data.train.cardinality())
    return n if n > 0 else sum(1 for _ in data.train)


def fit(model: keras.Model, data: Data, spec: TrainSpec, *, label: str, run_dir: Path,
        callbacks: list | None = None, sparsity: float = 0.0,
        teacher: keras.Model | None = None) -> dict[str, list[float]]:
    """Train ``spec.epochs`` epochs in ``run_dir`` and return the per-epoch history.

    A killed run resumes from its last finished epoch (``BackupAndRestore`` in
    ``run_dir/backup``), and the history is appended to ``run_dir/history.csv`` so the
    epochs before the kill are kept.  The resumed epochs see the data in the order the
    uninterrupted run would have (BackupAndRestore alone restarts the shuffle), so with
    deterministic ops a resumed run ends on the same weights; a model with ``Dropout`` does
    so when built inside :func:`~kerasprune.random_state.layer_generators` (the experiment's
    ``exact_resume``), whose random state :class:`~kerasprune.random_state.RandomState`
    keeps in ``run_dir/random_state.json``.  Backup and state go once training completes.
    The history's ``step_ms`` holds the median training step time of this phase; with
    ``spec.keep_best`` the model ends on its best validation epoch at ``sparsity``
    (:class:`~kerasprune.sparsity.callbacks.KeepBest`), recorded as ``kept_epoch`` (1-based).
    With ``spec.distill`` the training batches carry ``teacher``'s outputs
    (:mod:`kerasprune.distillation`); validation stays on the labels.
    """
    if spec.epochs == 0:
        return {}
    timer = StepTimer()
    backup, log, best = run_dir / "backup", run_dir / "history.csv", run_dir / "best"
    random_state = run_dir / "random_state.json"
    if not backup.exists():  # a fresh start: drop what an abandoned run left
        log.unlink(missing_ok=True)
        random_state.unlink(missing_ok=True)
        files.remove_folder(best)
    keep = [KeepBest(best, min_sparsity=sparsity)] if spec.keep_best else []
    cbs = [
        SparsityHistory(), *keep, *(callbacks or []),
        keras.callbacks.CSVLogger(str(log), append=True),
        RandomState(random_state),  # before the backup: see RandomState
        keras.callbacks.BackupAndRestore(str(backup), delete_checkpoint=True),
        EpochProgress(label), timer,
    ]
    train = data.train
    for _ in range(_finished_epochs(backup)):
        iter(train)  # each iterator draws the next epoch's shuffle and crop seeds: skip the done ones
    if spec.distill:
        train = with_teacher(train, teacher)
    try:
        model.fit(train, validation_data=data.val, epochs=spec.epochs, callbacks=cbs, verbose=0)
    except ValueError as exc:
        if "attempting to restore" not in str(exc):
            raise
        raise ModelError(f"{backup} holds a checkpoint of another model, which cannot resume "
                         f"this one ({exc}). Delete that folder, or rerun with --fresh.") from None
    shutil.rmtree(backup, ignore_errors=True)
    random_state.unlink(missing_ok=True)
    history = read_history(log)
    _check_finite(label, cbs, history, spec)
    kept = {"kept_epoch": [keep[0].best_epoch + 1]} if keep and keep[0].best_epoch is not None else {}
    return {**history, "step_ms": [timer.median_ms] if timer.median_ms else [], **kept}


def _finished_epochs(backup: Path) -> int:
    """How many epochs the checkpoint in ``backup`` holds (0 without one)."""
    latest = tf.train.latest_checkpoint(str(backup / "chief")) if backup.exists() else None
    if latest is None:
        return 0
    reader = tf.train.load_checkpoint(latest)
    return int(reader.get_tensor("ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE")) + 1


def _check_finite(label: str, callbacks: list, history: dict[str, list[float]],
                  spec: TrainSpec) -> None:
    """A run whose loss became NaN or Inf fails here, before a NaN model is evaluated or saved."""
    diverged = next((cb.diverged for cb in callbacks if getattr(cb, "diverged", None)), None)
    losses = history.get("loss", [])
    if diverged is None and all(math.isfinite(x) for x in losses):
        return
    if diverged:
        where = diverged["where"]
    else:
        where = f"epoch {next(i for i, x in enumerate(losses) if not math.isfinite(x)) + 1}"
    raise TrainingError(
        f"{label}: the training loss stopped being finite at {where} (learning rate "
        f"{spec.learning_rate:g}, optimizer {spec.optimizer}); nothing was saved for this run. "
        "Lower the phase's learning_rate in the config (or check the data for NaN/Inf) and "
        "run the command again.")


def read_history(path: Path) -> dict[str, list[float]]:
    """Columns of a CSVLogger file as lists of floats, one entry per epoch.

    An epoch logged twice (killed after its row was written but before its backup) keeps
    the row of the run that completed it.
    """
    with open(path, newline="") as f:
        rows = list({int(r["epoch"]): r for r in csv.DictReader(f)}.values())
    return {k: [float(r[k]) for r in rows] for k in (rows[0] if rows else {}) if k != "epoch"}
