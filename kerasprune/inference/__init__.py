"""Activation-based pruning at inference: watch live traffic, drop quiet neurons, bring
them back, compact with :mod:`kerasprune.structured`.

- :mod:`.monitor`: per-unit running mean |activation| and firing rate, from the serving call;
- :mod:`.serving`: :class:`AdaptiveInference`, the thresholds, the compacted model swapped
  in whole, hooks and saved state.
"""
from .monitor import STATISTICS, UsageMonitor
from .serving import EVENTS, AdaptiveInference, Answer, Serving, compiled

__all__ = ["EVENTS", "STATISTICS", "AdaptiveInference", "Answer", "Serving", "UsageMonitor", "compiled"]
