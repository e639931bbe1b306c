"""Unstructured pruning: masks on weights, chosen by importance, paced by a schedule.

One concept per module, as in tfmot's ``sparsity/keras``:

- :mod:`.registry`: which weights of a layer are prunable (tfmot's registry, plus Bidirectional);
- :mod:`.wrapper`: ``PruningWrapper``, the masks and Taylor scores of one layer;
- :mod:`.importance`: scores (magnitude, Taylor, user callables), one interface;
- :mod:`.allocation`: scores -> masks at an exact sparsity, per layer or global;
- :mod:`.schedules`: ``FeedbackSchedule``, step / hold / roll back by validation feedback;
- :mod:`.prune`: ``prune``, ``set_sparsity``, ``strip`` on whole models;
- :mod:`.callbacks`: ``AdaptivePruning`` and ``KeepBest`` for ``model.fit``;
- :mod:`.dynamic`: ``DynamicSparsity``, sparse from the first step (static, SET, RigL),
  with :mod:`.densities` (uniform / ERK layer densities) and :mod:`.slots` (optimizer
  state reset for regrown weights);
- :mod:`.masks` (how controllers move masks) and :mod:`.state` (their state in the weights).
"""
from .callbacks import AdaptivePruning, KeepBest
from .dynamic import DynamicSparsity
from .prune import model_sparsity, prune, set_sparsity, strip, wrappers
from .schedules import FeedbackSchedule
from .wrapper import PruningWrapper

__all__ = ["AdaptivePruning", "DynamicSparsity", "FeedbackSchedule", "KeepBest", "PruningWrapper",
           "model_sparsity",
           "prune", "set_sparsity", "strip", "wrappers"]
