"""The reinforcement-learning agent that sets per-layer pruning during training (issue 18).

Empty until that issue lands; it will drive :mod:`kerasprune.sparsity` and
:mod:`kerasprune.structured` through their public functions.
"""
