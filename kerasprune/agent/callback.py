"""``RLPruning``: the agent acts during ``fit``, at pruning intervals, through the wrappers.

At each interval's first epoch it searches per-group ratios on the current weights, for a
budget that steps from dense toward the target (interval i of n: 1 - (1 - budget) (i+1)/n),
and installs the best plan as the pruning wrappers' masks: a removed channel no longer
reaches the layers that read it, so training goes on around the cut, and at the end
:meth:`RLPruning.shrink` removes the channels for real.  Each plan keeps what earlier ones
removed.  With ``revise`` the first interval already cuts to the target, so every epoch
after it trains the final widths, and each later one revises the plan in place: its search
starts from that plan and keeps it unless another is ahead on the confirmation batches too,
and a group may take back channels it lost (with the weights they had when cut, as far as
the optimizer leaves a masked weight alone: the masks never zero the variables) while
another loses more.

The agent (networks, replay memory, exploration, generator), the plans and the
episode log are written atomically to ``state_path`` after every search, so a run resumed
by ``BackupAndRestore`` re-applies the plans it made and searches on where it stopped; the
file names the run it belongs to (another run's is refused) and goes when training ends.
"""
from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import keras, tf
from .. import checks
from ..checks import flag, number
from ..errors import ConfigError, ModelError, TrainingError
from ..files import write_bytes
from ..sparsity.prune import strip, wrappers
from ..structured import masks, shrink
from ..structured.plan import Plan
from .environment import PruningEnvironment
from .search import Search, split_options


class RLPruning(keras.callbacks.Callback):
    """Structured pruning to ``budget`` (fraction of dense MACs) set by a DQN agent.

    The model must be wrapped by ``kerasprune.prune`` (the masks hold the cuts).  The
    agent acts at epochs 0, ``every``, ... for ``intervals`` intervals, with ``episodes``
    episodes each, judged on ``eval_batches`` batches of ``data`` (held-out, not the
    training data), the finalists again on ``confirm_batches`` more.  ``options`` go to the
    environment (``actions``, ``max_ratio``, ``macs_weight``, ``importance``,
    ``confirm_batches``), the search (``start_uniform``, ``start_rankings``) and the DQN
    (``gamma``, ``learning_rate``, ...).  ``revise``: the target from the first interval
    on, later intervals revising the plan (see the module).
    """

    def __init__(self, data: tf.data.Dataset, *, budget: float, intervals: int = 3, every: int = 1,
                 episodes: int = 30, eval_batches: int = 4, seed: int = 0, revise: bool = False,
                 state_path: str | Path | None = None, verbose: int = 1, **options: Any) -> None:
        super().__init__()
        self.data, self.budget = data, number(budget, "RLPruning budget", low=0.0, high=1.0, low_open=True)
        self.intervals = number(intervals, "RLPruning intervals", low=1, integer=True)
        self.every = number(every, "RLPruning every", low=1, integer=True)
        self.episodes = number(episodes, "RLPruning episodes", low=1, integer=True)
        self.eval_batches, self.verbose = eval_batches, verbose
        self.seed = checks.seed(seed, "RLPruning seed")
        self.revise = flag(revise, "RLPruning revise")
        self.state_path = Path(state_path) if state_path is not None else None
        self.env_options, self.dqn_options = split_options(options, "RLPruning")
        self.search: Search | None = None
        self.plans: list[dict] = []  # per interval: epoch, budget, best episode, removed ids
        self.episode_log: list[dict] = []
        self.search_seconds = 0.0
        self._fit_before, self._fit_began = 0.0, None  # fit's time in earlier processes, and now

    @property
    def plan(self) -> Plan:
        """The last plan installed (nothing removed before the first interval)."""
        return Plan(set(self.plans[-1]["removed"])) if self.plans else Plan()

    def budget_at(self, interval: int) -> float:
        return self.budget if self.revise else 1.0 - (1.0 - self.budget) * (interval + 1) / self.intervals

    def on_train_begin(self, logs: dict | None = None) -> None:
        if not wrappers(self.model):
            raise ModelError("RLPruning: the model has no pruning wrappers to hold the agent's cuts; "
                             "wrap it first: model = kerasprune.prune(model, track_scores=False).")
        epochs = (self.params or {}).get("epochs")
        last = (self.intervals - 1) * self.every
        if epochs is not None and epochs <= last:
            raise ConfigError(f"RLPruning: its last interval begins at epoch {last + 1}, but fit runs "
                              f"{epochs} epochs, so the model would end above the budget; fit longer or "
                              "lower intervals or every.")
        started = self._fit_began = time.perf_counter()
        plain = strip(self.model)
        env = PruningEnvironment(plain, self.data, budget=self.budget, eval_batches=self.eval_batches,
                                 observe_now=False, **self.env_options)
        self.search = Search(env, seed=self.seed, epsilon_episodes=self.episodes * self.intervals,
                             **self.dqn_options)
        self._install(Plan({c.id for c in env.graph.channels}), check_only=True)
        self.plans, self.episode_log, self.search_seconds, self._fit_before = [], [], 0.0, 0.0
        built = time.perf_counter() - started  # the agent's own cost: scoring, its model copy
        if self.state_path is not None and self.state_path.is_file():
            with np.load(self.state_path) as saved:
                record = json.loads(bytes(saved["record"]).decode())
                if record.get("run") != self._fingerprint():
                    raise ConfigError(f"RLPruning: {self.state_path} holds the agent of another run "
                                      f"({record.get('run')}); delete it, or give this run its own "
                                      "state_path.")
                self.search.load_state({k: saved[k] for k in saved.files})
            self.plans, self.episode_log = record["plans"], record["episodes"]
            self.search_seconds, self._fit_before = record["seconds"], record["fit_seconds"]
        self.search_seconds += built

    def on_train_end(self, logs: dict | None = None) -> None:
        """The run is complete: its agent state has nothing left to resume (as BackupAndRestore
        removes its checkpoint)."""
        self._fit_before, self._fit_began = self.fit_seconds, None
        if self.state_path is not None:
            self.state_path.unlink(missing_ok=True)

    @property
    def fit_seconds(self) -> float:
        """``fit``'s wall time with this callback, over every process of a resumed run, as
        far as the saved state tells (to the last epoch end): what the search's share is of."""
        return self._fit_before + (time.perf_counter() - self._fit_began if self._fit_began else 0.0)

    def _fingerprint(self) -> dict:
        """What a saved agent must have been made for: this model's groups, budget, schedule,
        evaluation and the environment's and agent's options (resumed with other ones, the run
        would mix two searches).  As JSON reads it back, so that a tuple equals its list."""
        env = self.search.env
        run = {"groups": {", ".join(k): len(v) for k, v in env.groups.items()}, "budget": self.budget,
               "intervals": self.intervals, "every": self.every, "episodes": self.episodes,
               "seed": self.seed, "revise": self.revise, "actions": [float(a) for a in env.actions],
               "eval_batches": self.eval_batches, "options": {**self.env_options, **self.dqn_options}}
        return json.loads(json.dumps(run, sort_keys=True, default=str))

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if epoch % self.every or epoch // self.every >= self.intervals:
            return
        interval = epoch // self.every
        if interval < len(self.plans):  # resumed: this interval's search already ran
            self._install(Plan(set(self.plans[interval]["removed"])))
            return
        env, started = self.search.env, time.perf_counter()
        revising = self.revise and bool(self.plans)
        env.observe(strip(self.model, masked=not revising), removed=self.plan.removed, revive=revising)
        env.budget = self.budget_at(interval)
        previous = env.chosen(self.plans[-1]["ratios"]) if revising else None
        result = self.search.run(self.episodes, previous, interval=interval, epoch=epoch)
        best = result.best
        self._install(best.plan)
        seconds = time.perf_counter() - started  # the scores it observes count, not only episodes
        self.search_seconds += seconds
        self.episode_log += result.episodes
        self.plans.append({"interval": interval, "epoch": epoch, "budget": env.budget,
                           "ratios": best.ratios, "accuracy": best.accuracy, "macs": best.macs,
                           "seconds": seconds, "finalists": result.finalists,
                           "removed": sorted(int(i) for i in best.plan.removed)})
        self._save()
        if self.verbose:
            ratios = ", ".join(f"{k} {v:.2f}" for k, v in best.ratios.items())
            print(f"RL interval {interval + 1}/{self.intervals} (epoch {epoch + 1}): budget "
                  f"{env.budget:.3f} of dense MACs, {self.episodes} episodes in {seconds:.1f} s; "
                  f"kept {best.accuracy:.4f} held-out accuracy at {best.macs:.3f} MACs ({ratios}); "
                  f"{len(result.finalists)} plans judged again on the confirmation batches",
                  flush=True)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None and self.plans:
            logs["rl_macs"] = self.plans[-1]["macs"]
        if self.plans:  # the time so far, for a resumed run's share (before the backup's write)
            self._save()

    def shrink(self) -> keras.Model:
        """The smaller plain model: the wrapped model's weights with the last plan cut out.
        Refused while that plan is above the budget (``fit`` stopped before the last interval,
        by early stopping or a kill): the model would not be what was asked for."""
        if self.search is None:
            raise ModelError("RLPruning.shrink: the agent has not run; fit the model with this "
                             "callback first.")
        reached = self.plans[-1]["macs"] if self.plans else 1.0
        if reached > self.budget + 1e-9:
            raise TrainingError(f"RLPruning.shrink: fit ended after {len(self.plans)} of "
                                f"{self.intervals} intervals, at {reached:.3f} of dense MACs, above the "
                                f"budget {self.budget:g}; fit on through the last interval (a run "
                                "resumed with its backup and state_path goes on where it stopped).")
        return shrink(strip(self.model), self.plan, self.search.env.graph)

    def _install(self, plan: Plan, check_only: bool = False) -> None:
        """The plan's zeros as the wrappers' masks (replacing the previous plan's); with
        ``check_only``, only that every zero has a mask to hold it."""
        zeros = masks(self.search.env.model, plan, self.search.env.graph)
        by_layer = {w.layer.name: w for w in wrappers(self.model)}
        for name, arrays in zeros.items():
            layer = self.search.env.model.get_layer(name)
            index = {id(v): i for i, v in enumerate(layer.weights)}
            wrapper = by_layer.get(name)
            held = set()
            if wrapper is not None:
                inner = {id(v): i for i, v in enumerate(wrapper.layer.weights)}
                positions = [inner[id(p.variable)] for p in wrapper.prunable]
                if not check_only:
                    wrapper.set_masks([arrays[i] for i in positions], keep_previous=False)
                held = set(positions)
            loose = [layer.weights[i].name for i in index.values() if i not in held and not arrays[i].all()]
            if loose:
                raise ModelError(f"RLPruning: layer '{name}' must hold zeros in {', '.join(loose)}, "
                                 "which no pruning wrapper masks; wrap that layer with kerasprune.prune.")

    def _save(self) -> None:
        if self.state_path is None:
            return
        record = {"plans": self.plans, "episodes": self.episode_log, "seconds": self.search_seconds,
                  "fit_seconds": self.fit_seconds, "run": self._fingerprint()}
        state = {**self.search.state(), "record": np.frombuffer(json.dumps(record).encode(), np.uint8)}
        buffer = io.BytesIO()
        np.savez(buffer, **state)
        write_bytes(self.state_path, buffer.getvalue())
