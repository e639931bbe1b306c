"""An optimizer's per-weight state (Adam's moments, SGD's momentum), found and reset by weight.

A connection regrown by dynamic sparse training starts at zero; its optimizer state must
start there too, or Adam's stale moments from when it last lived (or from a connection
pruned long ago) would move it on the first step.  tf_keras has two optimizer families:
the current one names a weight's slots ``<optimizer>/<slot>/<weight name>``, the legacy one answers
``get_slot``.
"""
from __future__ import annotations

import numpy as np

from ..backend import keras, tf
from ..errors import ModelError


def slots(optimizer: keras.optimizers.Optimizer, variable: tf.Variable) -> list[tf.Variable]:
    """The optimizer variables that hold ``variable``'s per-entry state (empty before the
    first step, or for plain SGD)."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # under a LossScaleOptimizer
    if hasattr(optimizer, "get_slot_names"):  # the legacy optimizers
        found = [optimizer.get_slot(variable, name) for name in optimizer.get_slot_names()]
        return [s for s in found if s is not None]
    name, scope = f"{variable._shared_name}:0", f"{optimizer.name}/"

    def of_variable(slot: tf.Variable) -> bool:  # "Adam/m/dense/kernel:0": scope, slot, weight
        rest = slot.name.removeprefix(scope)
        return "/" in rest and rest.split("/", 1)[1] == name

    return [v for v in optimizer.variables if v.shape == variable.shape and of_variable(v)]


def reset(optimizer: keras.optimizers.Optimizer | None, variable: tf.Variable,
          where: np.ndarray) -> int:
    """Zero ``variable``'s optimizer state at the entries where ``where`` is true.

    Returns how many slot variables were reset.  An optimizer whose state for this weight
    cannot be found by either convention is refused rather than silently left stale.
    """
    if optimizer is None or not where.any():
        return 0
    found = slots(optimizer, variable)
    if not found and _has_state(getattr(optimizer, "inner_optimizer", optimizer)):
        raise ModelError(f"cannot find the {type(optimizer).__name__} state of {variable.name} to reset "
                         "it for regrown weights; use a tf_keras optimizer (Adam, AdamW, SGD, RMSprop).")
    keep = tf.constant(~where)
    for slot in found:
        slot.assign(tf.where(keep, slot, tf.zeros_like(slot)))
    return len(found)


def _has_state(optimizer) -> bool:
    """Whether the optimizer keeps per-weight variables yet (plain SGD, or any optimizer
    before its first step, has only scalars)."""
    return any(v.shape.rank for v in optimizer.variables)


__all__ = ["reset", "slots"]
