"""The reinforcement-learning agent that sets per-layer pruning during training.

:mod:`.environment` turns a model into per-group ratio choices (state, projection onto a
MACs budget, reward), :mod:`.dqn` is the value-based agent, :mod:`.search` runs episodes
and keeps the best plan, and :mod:`.callback` acts at intervals of ``fit`` through the
pruning wrappers and the structured surgery.
"""
from .callback import RLPruning
from .dqn import DQN
from .environment import Episode, PruningEnvironment
from .search import Search, SearchResult, search

__all__ = ["DQN", "Episode", "PruningEnvironment", "RLPruning", "Search", "SearchResult", "search"]
