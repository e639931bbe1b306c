"""Where a pruning controller keeps its state: in the model's weights, so checkpoints carry it.

Every :class:`~kerasprune.sparsity.wrapper.PruningWrapper` reserves ``STATE_SIZE`` floats
(its ``pruning_state`` weight).  A controller writes its state into every wrapper, tagged
with the controller's code in the first slot, and reads it back from the first wrapper, so
``BackupAndRestore``, ``ModelCheckpoint`` and ``save``/``load`` in any format resume it,
and a model left by one controller (or by an older layout) is never read as another's.
"""
from __future__ import annotations

from typing import Protocol, TypeVar

from ..backend import keras
from ..errors import ConfigError
from .prune import wrappers
from .wrapper import STATE_SIZE

#: controller -> the code in the first slot (101: the FeedbackSchedule layout of kerasprune
#: 0.1; 102: DynamicSparsity's)
CONTROLLERS = {"feedback": 101.0, "dynamic": 102.0}


class State(Protocol):
    def as_vector(self) -> list[float]: ...

    @classmethod
    def from_vector(cls, values) -> "State": ...


class FloatFields:
    """For a dataclass of floats: the State protocol, its fields in order."""

    def as_vector(self) -> list[float]:
        return [float(getattr(self, f)) for f in self.__dataclass_fields__]

    @classmethod
    def from_vector(cls, values):
        return cls(**{n: float(v) for n, v in zip(cls.__dataclass_fields__, values)})


S = TypeVar("S", bound=State)


def read_state(model: keras.Model, controller: str, kind: type[S]) -> S | None:
    """The state ``controller`` left in ``model``, or None when it left none there."""
    vector = wrappers(model)[0].state.numpy()
    if vector[0] != CONTROLLERS[controller]:
        return None
    return kind.from_vector(vector[1:])


def write_state(model: keras.Model, controller: str, state: State) -> None:
    """Store ``state`` under ``controller``'s code in every wrapper of ``model``."""
    values = [CONTROLLERS[controller], *state.as_vector()]
    if len(values) > STATE_SIZE:
        raise ConfigError(f"{controller}: a state of {len(values) - 1} floats does not fit the "
                          f"{STATE_SIZE - 1} a pruning wrapper keeps; raise STATE_SIZE.")
    padded = values + [0.0] * (STATE_SIZE - len(values))
    for wrapper in wrappers(model):
        wrapper.state.assign(padded)
