"""The agent's environment: one episode walks the model's removable groups in order and
sets a pruning ratio for each; the episode ends in a plan, its MACs and its accuracy.

The state of a step describes the group (position, layer type, width, its share of the
parameters and MACs, how unequal its channels' L1 norms, activations and activation-
gradient scores are, what is already removed) and the episode so far (MACs already cut,
MACs still to come, the last ratio), as AMC does (He et al. 2018).  With a ``budget`` (a
fraction of dense MACs) every ratio is projected up to the least that still lets the rest
reach it with ``max_ratio``, so every plan meets the budget and the reward can be
accuracy alone (AMC's resource-constrained form); the finished plan is then filled back
to the budget (:meth:`PruningEnvironment.fill`), since channels the budget allows are
never worth leaving out and a short search seldom learns that.  ``macs_weight`` > 0
gives the Lagrangian form, accuracy - weight * MACs fraction, and no filling.

The plan a search keeps is the best of many judged on the same few batches, so its
accuracy there is biased upwards (the winner's curse); ``confirm_batches`` further
held-out batches, never seen by the agent, judge the finalists again
(:meth:`PruningEnvironment.evaluate` with ``confirm=True``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np

from ..backend import keras, tf
from ..checks import number
from ..batches import labeled
from ..errors import ConfigError, TrainingError
from ..metrics.quality import hits, unit_threshold
from ..structured import PlanCost, analyze, channel_scores, make_plan, masks, ratio_for_macs
from ..structured.plan import Plan, removed_count

_TYPES = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D, keras.layers.Dense,
          keras.layers.RNN, keras.layers.Embedding)
#: numbers a state holds: position, a layer-type one-hot (the kinds above and "other"), the group's
#: log width, parameter and MACs shares, three score spreads, removed so far, MACs cut so far,
#: MACs still ahead, the previous ratio
STATE_SIZE = len(_TYPES) + 12


#: the global rankings the experiments compare the agent with (``structured`` with ``scope:
#: global``), which a search may play as its own episodes (:meth:`PruningEnvironment.ranked`)
RANKINGS = ("l1", "activation_taylor")

#: the settings of PruningEnvironment that RLPruning and search() pass through
ENV_OPTIONS = ("actions", "max_ratio", "macs_weight", "importance", "confirm_batches")


@dataclass
class Episode:
    """One episode's outcome: ratio per group (keys joined by ", "), accuracy, MACs fraction."""

    ratios: dict[str, float]
    accuracy: float
    macs: float
    reward: float
    seconds: float
    plan: Plan


def _spread(scores: np.ndarray) -> float:
    mean = float(np.mean(scores))
    return float(np.std(scores) / mean) if mean > 0 else 0.0


class PruningEnvironment:
    """Structured pruning of ``model`` as a sequence of per-group ratio choices.

    ``data`` is the held-out batches an episode is judged on (``eval_batches`` of them,
    read once, then ``confirm_batches`` more for the finalists); ``actions`` the ratios
    the agent picks from (steps of 0.05 up to ``max_ratio`` by default); :meth:`observe`
    takes new weights and the channel ids earlier intervals cut (kept removed, or allowed
    back).
    """

    def __init__(self, model: keras.Model, data: tf.data.Dataset, *, budget: float = 1.0,
                 actions: tuple[float, ...] | None = None, max_ratio: float = 0.8,
                 macs_weight: float = 0.0, importance: str = "l1", eval_batches: int = 4,
                 confirm_batches: int = 4, observe_now: bool = True) -> None:
        self.budget = number(budget, "RL budget", low=0.0, high=1.0, low_open=True)
        self.max_ratio = number(max_ratio, "RL max_ratio", low=0.0, high=1.0, high_open=True)
        self.macs_weight = number(macs_weight, "RL macs_weight", low=0.0)
        if actions is None:  # steps of 0.05 up to max_ratio
            actions = np.round(np.arange(0.0, self.max_ratio + 1e-9, 0.05), 2)
        self.actions = np.array(sorted(number(a, "RL action", low=0.0, high=self.max_ratio)
                                       for a in actions), np.float64)
        if len(self.actions) < 2:
            raise ConfigError(f"RL actions: need at least two ratios up to max_ratio {max_ratio:g}, "
                              f"got {list(actions)}.")
        self.importance = importance
        self.graph = analyze(model)
        self.groups = self.graph.groups()
        if not self.groups:
            raise ConfigError(f"RL: model '{model.name}' has no removable channels "
                              f"({self.graph.describe()}).")
        self.keys = list(self.groups)
        self.cost = PlanCost(model, self.graph)
        self.model = model
        eval_batches = number(eval_batches, "RL eval_batches", low=1, integer=True)
        confirm_batches = number(confirm_batches, "RL confirm_batches", low=0, integer=True)
        data = labeled(data, model, "RL evaluation data")
        read = [(tf.constant(x), np.asarray(y)) for x, y in data.take(eval_batches + confirm_batches)]
        if len(read) < eval_batches + confirm_batches:
            raise ConfigError(f"RL: the held-out data has {len(read)} batches, but eval_batches "
                              f"{eval_batches} + confirm_batches {confirm_batches} need "
                              f"{eval_batches + confirm_batches}; lower them, or give more held-out data "
                              "or a smaller batch size.")
        self._batches, self._confirm = read[:eval_batches], read[eval_batches:]
        self._clone = keras.models.clone_model(model)
        self._forward = tf.function(lambda x: self._clone(x, training=False), reduce_retracing=True)
        self._threshold = unit_threshold(model)  # a single unit's class cut, from the model
        self.removed: set[int] = set()
        if observe_now:  # RLPruning observes at its first interval: scoring twice costs seconds
            self.observe(model)
        top = float(self.actions[-1])
        smallest = self.cost.fraction(self._kept({k: top for k in self.keys}))
        if smallest > self.budget + 1e-9:
            raise ConfigError(f"RL: a budget of {self.budget:g} of dense MACs cannot be met: removing "
                              f"{top:g} of every group (the largest action) leaves {smallest:.3f}; raise "
                              "max_ratio (and the actions) or the budget.")

    # -- what the agent sees --

    def observe(self, model: keras.Model, removed: set[int] | None = None, revive: bool = False) -> None:
        """Take ``model``'s current weights (same architecture) and the channels already
        removed, which a plan keeps removed.

        With ``revive``, ``model`` holds the removed channels' weights as they were when cut
        (the masks never zero the variables) and a plan may bring them back: each group's
        removed channels rank below its kept ones (among themselves by their score on those
        weights), so the ratios in place remove the same channels, a lower ratio revives the
        best of them, and episodes are judged on these weights.
        """
        self.removed = set(removed or ())
        self._judged: dict[tuple, Episode] = {}  # ratios -> episode, for these weights
        data = tf.data.Dataset.from_tensor_slices(
            (np.concatenate([x.numpy() for x, _ in self._batches]),
             np.concatenate([y for _, y in self._batches]))).batch(len(self._batches[0][1]))
        weights = model.get_weights()
        self.model.set_weights(weights)
        if revive:  # the removed channels' own order, then the scores of the model as it runs
            stale = channel_scores(self.graph, self.importance, data, len(self._batches))
            for name, zero in masks(self.model, Plan(self.removed), self.graph).items():
                layer = self.model.get_layer(name)
                layer.set_weights([w * m for w, m in zip(layer.get_weights(), zero)])
        kinds = ("l1", "mean_activation", "activation_taylor")  # RANKINGS among them
        scored = {m: channel_scores(self.graph, m, data, len(self._batches))
                  for m in dict.fromkeys((self.importance, *kinds))}  # each score once
        self._rankings = {m: scored[m] for m in RANKINGS}
        current = scored[self.importance]
        if revive:
            below, top = min(current.values()) - 1.0, max(stale.values())
            self.scores = {i: (below - (top - stale[i]) if i in self.removed else s) for i, s in current.items()}
            self.model.set_weights(weights)
        else:
            self.scores = {i: (-1.0 if i in self.removed else s) for i, s in current.items()}
        self._clone.set_weights(weights)
        self._weights = {layer.name: layer.get_weights() for layer in self.model.layers}
        spreads = [scored[m] for m in kinds]
        macs, params = self.cost.dense or 1, max(1, self.model.count_params())
        self._static, self.floor = [], {}
        for t, key in enumerate(self.keys):
            ids = np.array([c.id for c in self.groups[key]])
            lost = float(np.isin(ids, list(self.removed)).mean())
            self.floor[key] = 0.0 if revive else lost
            layer = model.get_layer(key[0])
            kind = [float(isinstance(layer, k)) for k in _TYPES]
            kind.append(float(not any(kind)))
            own_macs = sum(self.cost.layer_macs.get(name, 0) for name in key) / macs
            own_params = sum(int(np.prod(w.shape)) for name in key for w in model.get_layer(name).weights) / params
            self._static.append([t / len(self.keys), *kind, math.log2(len(ids)) / 12, own_params, own_macs,
                                 *(_spread(np.array([s[i] for i in ids])) for s in spreads), lost])

    def state(self, t: int, ratios: dict[tuple[str, ...], float]) -> np.ndarray:
        dense = self.cost.dense or 1
        cut = 1.0 - self.cost.of_kept(self._kept(ratios)) / dense
        ahead = sum(self._static[j][len(_TYPES) + 4] for j in range(t + 1, len(self.keys)))
        previous = ratios[self.keys[t - 1]] if t else 0.0
        return np.array([*self._static[t], cut, ahead, previous], np.float32)

    def allowed(self, t: int) -> np.ndarray:
        return self.actions >= self.floor[self.keys[t]] - 1e-9

    # -- the rules of an episode --

    def _kept(self, ratios: dict[tuple[str, ...], float]) -> dict[tuple[str, ...], int]:
        return {k: len(self.groups[k]) - removed_count(len(self.groups[k]), r) for k, r in ratios.items()}

    def _fits(self, ratios: dict[tuple[str, ...], float]) -> bool:
        return self.cost.of_kept(self._kept(ratios)) <= self.budget * self.cost.dense + 1e-6

    def project(self, t: int, ratios: dict[tuple[str, ...], float], action: int) -> int:
        """The least action >= ``action`` after which the groups ahead, at the largest
        action, can still bring the plan within the budget."""
        ahead = {k: float(self.actions[-1]) for k in self.keys[t + 1:]}
        for a in range(action, len(self.actions)):
            if self._fits({**ratios, self.keys[t]: self.actions[a], **ahead}):
                return a
        raise TrainingError(f"RL: no ratio for {', '.join(self.keys[t])} keeps the plan within "
                            f"{self.budget:g} of dense MACs (earlier groups: {ratios}); this is a bug "
                            "in the projection, please report it.")

    def ratios(self, chosen: dict[tuple[str, ...], int]) -> dict[tuple[str, ...], float]:
        """The ratio of each group's chosen action."""
        return {k: float(self.actions[a]) for k, a in chosen.items()}

    def chosen(self, ratios: dict[str, float]) -> dict[tuple[str, ...], int]:
        """The actions of a plan's ratios as an episode logs them (keys joined by ", ")."""
        out = {}
        for key in self.keys:
            ratio = ratios[", ".join(key)]
            match = np.flatnonzero(np.isclose(self.actions, ratio))
            if not len(match):
                raise ConfigError(f"RL: ratio {ratio:g} for {', '.join(key)} is none of the actions "
                                  f"{list(self.actions)}; a plan made with other actions cannot be replayed.")
            out[key] = int(match[0])
        return out

    def uniform(self) -> dict[tuple[str, ...], int]:
        """The least action that, given to every group (none below what it already lost),
        meets the budget, filled back to it: the uniform plan, as the agent's actions."""
        least = {k: int(np.flatnonzero(self.allowed(t))[0]) for t, k in enumerate(self.keys)}
        for a in range(len(self.actions)):
            chosen = {k: max(a, b) for k, b in least.items()}
            if self._fits(self.ratios(chosen)):
                return self.fill(chosen)
        raise TrainingError(f"RL: not even the largest action on every group meets {self.budget:g} of "
                            "dense MACs; this is a bug in the budget check, please report it.")

    def ranked(self, importance: str) -> dict[tuple[str, ...], int]:
        """The plan of the global ranking by ``importance`` (one of :data:`RANKINGS`, scored
        on the weights :meth:`observe` took): every channel ranked together, each group's
        scores over their mean, as ``structured`` with ``scope: global`` does, cut to the
        budget; as the agent's actions: each group's removed share to the nearest action
        (none below what it already lost), then, while the plan is above the budget, one
        step more for the group furthest below its share.  Not filled: :meth:`fill` would
        hand the rounding's slack to the last group and undo the ranking's shape.  Only the
        ratios are the ranking's: which channels of a group go is, as in every plan, the
        environment's ``importance`` order."""
        scores = self._rankings[importance]
        ratio = ratio_for_macs(self.budget, self.graph, scores, self.cost, scope="global")
        removed = list(make_plan(self.graph, scores, ratio, scope="global").removed)
        share = {k: float(np.isin([c.id for c in self.groups[k]], removed).mean()) for k in self.keys}
        chosen = {}
        for t, key in enumerate(self.keys):
            allowed = np.flatnonzero(self.allowed(t))
            chosen[key] = int(allowed[np.argmin(np.abs(self.actions[allowed] - share[key]))])
        top = len(self.actions) - 1
        while not self._fits(self.ratios(chosen)):  # the largest action on every group fits
            key = max((k for k in self.keys if chosen[k] < top), key=lambda k: share[k] - self.actions[chosen[k]])
            chosen[key] += 1
        return chosen

    def fill(self, chosen: dict[tuple[str, ...], int]) -> dict[tuple[str, ...], int]:
        """``chosen`` (an action per group, within the budget) with each group's action
        lowered, last group first, to the least the budget still allows: the agent's
        earlier choices stay as they were unless the later groups cannot use the slack."""
        filled = dict(chosen)
        for t in reversed(range(len(self.keys))):
            key = self.keys[t]
            lower = np.flatnonzero(self.allowed(t))
            for a in lower[lower < filled[key]]:  # from the least ratio up
                if self._fits(self.ratios({**filled, key: a})):
                    filled[key] = int(a)
                    break
        return filled

    def plan(self, ratios: dict[tuple[str, ...], float]) -> Plan:
        return make_plan(self.graph, self.scores, ratios)

    @property
    def confirms(self) -> bool:
        """Whether there are confirmation batches to judge a search's finalists on."""
        return bool(self._confirm)

    def evaluate(self, ratios: dict[tuple[str, ...], float], confirm: bool = False) -> Episode:
        """Accuracy of the masked model on the held-out batches (the confirmation batches
        with ``confirm``), and its MACs.

        Ratios judged before on the same weights are answered from memory (the masked model
        and the batches are the same, so is the answer): as exploration ends, most episodes
        repeat a policy, and on a recurrent model a judgement costs a second."""
        start = time.perf_counter()
        key = (confirm, *sorted((k, float(r)) for k, r in ratios.items()))
        if key in self._judged:
            return replace(self._judged[key], seconds=time.perf_counter() - start)
        if confirm and not self._confirm:
            raise ConfigError("RL: a confirmation was asked for, but confirm_batches is 0.")
        plan = self.plan(ratios)
        macs = self.cost.fraction(plan)
        zeros = masks(self.model, plan, self.graph)
        for name, zero in zeros.items():
            self._clone.get_layer(name).set_weights([w * m for w, m in zip(self._weights[name], zero)])
        correct = total = 0
        for x, y in self._confirm if confirm else self._batches:
            hit = hits(self._forward(x).numpy(), y, self._threshold)
            correct, total = correct + int(hit.sum()), total + hit.size
        for name in zeros:
            self._clone.get_layer(name).set_weights(self._weights[name])
        accuracy = correct / total
        self._judged[key] = Episode({", ".join(k): float(r) for k, r in ratios.items()}, accuracy, macs,
                                    accuracy - self.macs_weight * macs, time.perf_counter() - start, plan)
        return self._judged[key]
