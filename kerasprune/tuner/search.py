"""Keras Tuner searches over compression, with tf_keras models.

keras-tuner 1.4 imports Keras 3, and its ``Tuner`` refuses any model that is not a Keras 3
``Model`` (keras-tuner issues 1027 and 1039).  Its ``BaseTuner`` looks at no model at
all: it keeps the oracles (random search, Bayesian optimization, Hyperband), the project
folder and its resumption, and the distributed chief/worker mode.  So
:class:`CompressionTuner` is a ``BaseTuner`` whose trials do the work themselves: start
from the trained model, compress it by :func:`compression_space`'s choice, fine-tune
(resumably, in the trial's folder), export the checked ``.tflite``, score that file on the
validation split and time it, and report accuracy, bytes and latency to the oracle.  The
user's own ``import keras`` (Keras 3) is left alone.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import keras_tuner as kt

from .. import benchmark, export, files, loading, quantization
from ..backend import keras
from ..benchmark.artifacts import Artifact
from ..benchmark.footprint import gzip_bytes
from ..data import Data
from ..errors import ConfigError
from ..experiment import training
from ..experiment.runner import file_scores
from ..experiment.spec import TrainSpec
from ..metrics import global_sparsity
from ..metrics.quality import unit_threshold
from ..sparsity.callbacks import AdaptivePruning
from ..sparsity.prune import prune, strip
from ..sparsity.schedules import FeedbackSchedule
from ..structured import plan_channels, shrink
from . import distributed
from .space import Compression, compression_space

SEARCHES = {"random": kt.oracles.RandomSearchOracle, "bayesian": kt.oracles.BayesianOptimizationOracle,
            "hyperband": kt.oracles.HyperbandOracle}
#: what the oracle maximizes: validation accuracy, minus a penalty past a budget
SCORE = "score"


class _Space(kt.HyperModel):
    """Registers the compression hyperparameters (the oracle needs them before trial 1)."""

    def __init__(self, space: Callable, baseline: Callable[[], keras.Model]) -> None:
        super().__init__()
        self.space, self.baseline = space, baseline

    def build(self, hp):
        self.space(hp)
        return self.baseline()


class CompressionTuner(kt.engine.base_tuner.BaseTuner):
    """Search the compression of ``model`` (trained) on ``data``, under byte or latency budgets.

    ``search`` is ``"random"``, ``"bayesian"`` or ``"hyperband"`` (or pass your own
    ``oracle`` with objective :data:`SCORE`).  Each trial fine-tunes for ``finetune``
    (Hyperband sets its own epochs, and its brackets the number of trials, at most
    ``max_trials``).  A trial over ``max_bytes`` (of the raw file, or its
    gzip with ``size="gzip"``) or ``max_latency_ms`` scores its accuracy minus one minus
    the overshoot, so the oracle prefers any trial within the budgets.  A quantized file
    that agrees with its Keras model on fewer than ``min_agreement`` of the check examples
    is refused by the export, and its trial fails with that reason.
    """

    def __init__(self, model: keras.Model, data: Data, *, finetune: TrainSpec,
                 search: str = "random", max_trials: int = 10, oracle=None,
                 space: Callable = compression_space, max_bytes: int | None = None,
                 max_latency_ms: float | None = None, size: str = "raw", min_agreement: float = 0.95,
                 seed: int = 0,
                 directory: str | Path = "saved_models/tune", project_name: str = "search",
                 overwrite: bool = False) -> None:
        if search not in SEARCHES and oracle is None:
            raise ConfigError(f"CompressionTuner: search must be one of {', '.join(SEARCHES)}, "
                              f"got {search!r}.")
        if not isinstance(data, Data):  # each trial would fail on its own, and the search go on
            raise ConfigError(f"CompressionTuner: data must be the Data of kerasprune.data.load(...), "
                              f"got {type(data).__name__} {getattr(data, '__name__', '')}".rstrip() + ".")
        if size not in ("raw", "gzip"):
            raise ConfigError(f"CompressionTuner: size must be 'raw' or 'gzip', got {size!r}.")
        self.data, self.finetune, self.space = data, finetune, space
        self.max_bytes, self.max_latency_ms, self.size = max_bytes, max_latency_ms, size
        self.min_agreement = min_agreement
        weights = model.get_weights()

        def baseline() -> keras.Model:
            copy = keras.models.clone_model(model)
            copy.set_weights(weights)
            return copy

        self.baseline = baseline
        if oracle is None:
            objective = kt.Objective(SCORE, "max")
            if search == "hyperband":  # its brackets decide how many trials; max_trials caps them
                oracle = SEARCHES[search](objective, max_epochs=max(2, finetune.epochs), seed=seed)
                oracle.max_trials = max_trials
            else:
                oracle = SEARCHES[search](objective, max_trials=max_trials, seed=seed)
        super().__init__(oracle, _Space(space, baseline), directory=str(directory),
                         project_name=project_name, overwrite=overwrite)
        distributed.outlive_the_chief(self.oracle)  # a chief restarted mid-search
        self.ran: list[str] = []  # the trials this process ran (on a distributed worker: its share)

    def run_trial(self, trial, *args, **kwargs) -> dict[str, float]:
        hp = trial.hyperparameters
        choice: Compression = self.space(hp)
        folder = Path(self.get_trial_dir(trial.trial_id))
        model = self.baseline()
        if choice.ratio > 0:
            model = shrink(model, plan_channels(model, choice.ratio))
        epochs = int(hp.values.get("tuner/epochs", self.finetune.epochs))
        spec = dataclasses.replace(self.finetune, epochs=epochs)
        callbacks = []
        if choice.sparsity > 0:
            model = prune(model, track_scores=True)
            schedule = FeedbackSchedule(initial=min(0.5, choice.sparsity), final=choice.sparsity,
                                        step=0.15, every=1, recovery_epochs=1)
            callbacks.append(AdaptivePruning(schedule))
        training.compile_for(model, spec, training.steps_per_epoch(self.data))
        training.fit(model, self.data, spec, label=f"trial {trial.trial_id}", run_dir=folder,
                     callbacks=callbacks, sparsity=choice.sparsity)
        model = strip(model) if choice.sparsity > 0 else model
        record = self._measure(model, choice, folder)
        self.ran.append(trial.trial_id)
        return {**record, SCORE: self._score(record)}

    def _measure(self, model: keras.Model, choice: Compression, folder: Path) -> dict[str, float]:
        settings = {"mode": choice.precision, "min_agreement": self.min_agreement}
        if choice.precision == "mixed":
            table = quantization.measure(model, self.data.val, 4)
            settings["bits"] = quantization.allocate(
                table, eight_bit_fraction=choice.eight_bit_fraction).bits
        with files.atomic_path(folder / "model.keras") as tmp:
            model.save(tmp)
        out = export.to_tflite(model, folder / "model.tflite", check_inputs=self.data.sample_inputs(64),
                               **settings)
        timed = benchmark.bench([Artifact("trial", out.path, "tflite")], ["tflite@1"],
                                throughput_batch=None, rounds=3, min_block_seconds=0.1,
                                progress=None, name="trial")
        latency = next(r["latency"]["median_ms"] for r in timed["results"] if r.get("latency"))
        scores = file_scores(out.content, self.data.val, unit_threshold(model))
        # what the trial reached, beside the sparsity it asked for: a short fine-tuning (one of
        # Hyperband's first brackets) ends before the schedule gets there
        return {"val_accuracy": scores["accuracy"], "val_f1": scores["f1"],
                "tflite_bytes": out.bytes, "tflite_gzip_bytes": gzip_bytes(out.path),
                "latency_ms": latency, "params": model.count_params(),
                "sparsity": global_sparsity(model)}

    def _score(self, record: dict[str, float]) -> float:
        over = 0.0
        size = record["tflite_gzip_bytes" if self.size == "gzip" else "tflite_bytes"]
        if self.max_bytes is not None and size > self.max_bytes:
            over += size / self.max_bytes - 1
        if self.max_latency_ms is not None and record["latency_ms"] > self.max_latency_ms:
            over += record["latency_ms"] / self.max_latency_ms - 1
        return record["val_accuracy"] - (1 + over if over else 0.0)

    def save_model(self, trial_id, model, step=0) -> None:
        """Nothing to do: each trial writes its model.keras and model.tflite itself."""

    def load_model(self, trial) -> keras.Model:
        return loading.load_model(Path(self.get_trial_dir(trial.trial_id)) / "model.keras")

    def trials(self) -> list[dict]:
        """Every finished trial: its hyperparameters and metrics (on the chief, or alone)."""
        if not hasattr(self.oracle, "trials"):
            raise ConfigError(f"CompressionTuner {self.tuner_id} is a distributed worker: the trials "
                              "and the Pareto front are read on the chief.")
        out = []
        for trial in self.oracle.trials.values():
            if trial.status != "COMPLETED":
                continue
            values = {name: trial.metrics.get_last_value(name) for name in trial.metrics.metrics}
            out.append({"trial": trial.trial_id, "hyperparameters": dict(trial.hyperparameters.values),
                        **values})
        return out

    def pareto(self, size: str | None = None) -> list[dict]:
        """The trials no other trial beats on both validation accuracy and bytes."""
        key = "tflite_gzip_bytes" if (size or self.size) == "gzip" else "tflite_bytes"
        rows = self.trials()
        return sorted((r for r in rows if not any(
            o["val_accuracy"] >= r["val_accuracy"] and o[key] <= r[key]
            and (o["val_accuracy"] > r["val_accuracy"] or o[key] < r[key]) for o in rows)),
            key=lambda r: r[key])
