"""What an experiment config says, as plain frozen data: phases, budget, runs.

These types stand alone (no registry, no TensorFlow), so the config loader, the method
registry, the training loop and the runner can all read them without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

#: the roles a comparison is built on, by method name: the baseline every method starts
#: from and is compared with, and the peer each kerasprune method is judged against
BASELINE = "dense"
PEER = "tfmot_gmp"


@dataclass(frozen=True)
class TrainSpec:
    """How a phase trains: optimizer, learning rate and its schedule, epochs."""

    epochs: int = 10
    optimizer: str = "adam"  # adam | adamw | sgd
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    schedule: str = "cosine"  # cosine | constant
    keep_best: bool = False  # end on the best validation epoch at the run's sparsity
    clipnorm: float = 0.0  # each gradient clipped to this norm (Keras' clipnorm); 0: unclipped
    # the weight of the dense baseline's softened outputs in the loss (0: labels alone), and
    # their temperature; see kerasprune.distillation
    distill: float = 0.0
    temperature: float = 4.0


@dataclass(frozen=True)
class Budget:
    name: str
    model: str
    model_args: dict[str, Any]
    data: dict[str, Any]
    train: TrainSpec
    finetune: TrainSpec

    def for_run(self, training: dict[str, Any]) -> "Budget":
        """This budget as one run trains: its own settings (``RUN_TRAINING_KEYS``) on both
        phases and its batch size in ``data``; the epochs stay the budget's."""
        if not training:
            return self
        phase = {k: v for k, v in training.items() if k != "batch_size"}
        data = {**self.data, **({"batch_size": training["batch_size"]} if "batch_size" in training else {})}
        return replace(self, data=data, train=replace(self.train, **phase),
                       finetune=replace(self.finetune, **phase))


#: the phase settings one run may set for itself, so that the peer gets its own tuning;
#: the epochs (and keep_best) stay the budget's: every method trains as long, by one rule
RUN_TRAINING_KEYS = ("learning_rate", "schedule", "optimizer", "weight_decay", "momentum",
                     "clipnorm", "distill", "temperature", "batch_size")


def phase_of(method: str, params: dict[str, Any]) -> str:
    """The phase a run trains in: the baseline and runs ``start: scratch`` train from
    scratch (``train``), every other run fine-tunes the baseline (``finetune``)."""
    return "train" if method == BASELINE or params.get("start") == "scratch" else "finetune"


@dataclass(frozen=True)
class RunSpec:
    """One run: a method with one value per parameter, and its name in results.

    ``training`` overrides the phase the run trains in (keys of ``RUN_TRAINING_KEYS``);
    ``tag`` names a group of runs of one method that share settings (``tfmot_gmp-recipe``).
    """

    method: str
    params: dict[str, Any]
    run_id: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    tag: str = ""

    @property
    def settings(self) -> dict[str, Any]:
        """Everything the run sets: the method's parameters and its own training settings."""
        return {**self.params, **self.training}


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    dataset: str
    seed: int
    budget: Budget
    runs: list[RunSpec]
    path: Path
    description: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: random layers draw from a generator whose state is kept, so a killed run resumes
    #: exactly (:mod:`kerasprune.random_state`); another stream than without it
    exact_resume: bool = False

#: the phases of a traffic scenario (:mod:`.traffic`), in the order they are served
TRAFFIC_PHASES = ("all", "narrowed", "restored")
