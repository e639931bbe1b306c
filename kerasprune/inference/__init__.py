"""Activation-based pruning at inference (issue 15): watch live traffic, drop quiet neurons,
bring them back, compact with :mod:`kerasprune.structured`.  Empty until that issue lands."""
