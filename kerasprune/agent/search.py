"""The agent's search: DQN episodes over the environment, the best plan they found.

:class:`Search` keeps the agent between calls, so the RL callback's searches at each
pruning interval start from what the earlier ones learned; :func:`search` is one search
on a trained model.  Every transition but an episode's last earns 0; the last earns the
episode's reward minus a running mean of earlier rewards (AMC's variance-reducing
baseline), times ``reward_scale``, so small accuracy differences move Q-values.

Under a budget (and no ``macs_weight``) a search's first episode plays the uniform plan,
the same ratio for every group (:meth:`PruningEnvironment.uniform`), instead of a random
one: the agent learns from the heuristic it is judged against, and keeps it when nothing
it finds is better on the held-out batches.  ``start_uniform=False`` leaves it out.  With
``start_rankings`` the next episodes play the global rankings' plans
(:meth:`PruningEnvironment.ranked`, by L1 norm and by activation x gradient): the other
heuristics it is judged against, learned from and kept on the same terms as its own plans.

With the environment's confirmation batches, the best plan is not taken on the word of the
batches it was picked on (:meth:`Search._choose`): the ``FINALISTS`` best plans, and the
uniform plan, are judged again on batches the agent never saw.  A plan then replaces the
uniform one only if it is ahead on both.  A search that revises a plan in place (the RL
callback's ``revise``) plays that plan first instead, and it is the one to beat.
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field

import numpy as np

from ..backend import keras, tf
from ..checks import flag, number
from ..errors import ConfigError, TrainingError
from .dqn import DQN
from .environment import ENV_OPTIONS, RANKINGS, STATE_SIZE, Episode, PruningEnvironment


#: how many of a search's best plans are judged again on the confirmation batches
FINALISTS = 3


@dataclass
class SearchResult:
    """The plan a search keeps (it meets the budget), every episode's log, and the
    finalists judged on the confirmation batches (reward there as ``confirmed``)."""

    best: Episode
    episodes: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    finalists: list[dict] = field(default_factory=list)


class Search:
    """An environment and the DQN that learns on it, carried from one search to the next."""

    def __init__(self, env: PruningEnvironment, *, seed: int = 0, epsilon_episodes: int = 100,
                 reward_scale: float = 10.0, start_uniform: bool = True, start_rankings: bool = False,
                 **dqn) -> None:
        self.env = env
        self.agent = DQN(STATE_SIZE, len(env.actions), seed=seed, epsilon_episodes=epsilon_episodes, **dqn)
        self.reward_scale = number(reward_scale, "RL reward_scale", low=0.0, low_open=True)
        constrained = env.budget < 1.0 and not env.macs_weight
        self.start_uniform = flag(start_uniform, "RL start_uniform") and constrained
        self.start_rankings = flag(start_rankings, "RL start_rankings") and constrained
        self.baseline: float | None = None
        self.episodes = 0  # over every search of this agent

    def run(self, episodes: int, previous: dict[tuple[str, ...], int] | None = None,
            **log_fields) -> SearchResult:
        """``episodes`` episodes and then one greedy one; the plan kept is :meth:`_choose`'s.
        ``previous`` (an action per group: the plan in place) is played first instead of the
        uniform plan, and is the plan to beat; the rankings' plans (``start_rankings``) come
        next, in place of as many of the agent's own exploring episodes."""
        episodes = number(episodes, "RL episodes", low=1, integer=True)
        first = previous if previous is not None else self.env.uniform() if self.start_uniform else None
        starts = [(None, first)] if first is not None else []
        if self.start_rankings:
            starts += [(m, self.env.ranked(m)) for m in RANKINGS]
        starts = starts[:episodes]
        start, log, played = time.perf_counter(), [], []
        for e in range(episodes + 1):
            ranking, chosen = starts[e] if e < len(starts) else (None, None)
            epsilon = self.agent.epsilon if e < episodes else 0.0  # its own; greedy at the end
            episode = self._episode(explore=e < episodes, chosen=chosen)
            log.append({**log_fields, "episode": self.episodes, "greedy": e == episodes,
                        "uniform": e == 0 and first is not None and previous is None,
                        "previous": e == 0 and previous is not None, "ranking": ranking,
                        "epsilon": round(epsilon, 4), "ratios": episode.ratios,
                        "accuracy": episode.accuracy, "macs": episode.macs,
                        "reward": episode.reward, "seconds": round(episode.seconds, 4)})
            played.append(episode)
        named = {_plan_key(played[e]): ranking for e, (ranking, _) in enumerate(starts) if ranking}
        best, finalists = self._choose(played, played[0] if first is not None else None, previous is not None,
                                       named)
        return SearchResult(best, log, time.perf_counter() - start, finalists)

    def _choose(self, played: list[Episode], incumbent: Episode | None, previous: bool = False,
                named: dict[tuple, str] | None = None) -> tuple[Episode, list[dict]]:
        """The highest reward (the earliest of equals) without confirmation batches.  With
        them: the ``FINALISTS`` best distinct plans ahead of the incumbent (the uniform plan,
        or the ``previous`` one) are judged again there, and the one ahead of it there too by
        the most is kept (ties to the higher first reward); if none is, the incumbent.
        Without an incumbent, the finalist best on the confirmation batches.  ``named``: the
        rankings' plans, which the record names."""
        distinct: dict[tuple, Episode] = {}
        for episode in played:
            distinct.setdefault(_plan_key(episode), episode)
        ranked = sorted(distinct.values(), key=lambda ep: -ep.reward)  # stable: the earliest first
        if not self.env.confirms:
            return ranked[0], []
        finalists = [ep for ep in ranked if incumbent is None or ep.reward > incumbent.reward][:FINALISTS]
        if not finalists:
            return incumbent, []

        def confirmed(episode: Episode) -> float:
            ratios = {key: episode.ratios[", ".join(key)] for key in self.env.keys}
            return self.env.evaluate(ratios, confirm=True).reward

        judged = [(ep, confirmed(ep)) for ep in finalists]
        floor = -np.inf if incumbent is None else confirmed(incumbent)
        ahead = [(ep, r) for ep, r in judged if r > floor]
        best = max(ahead, key=lambda item: item[1])[0] if ahead else incumbent  # max keeps the first
        record = [{"ratios": ep.ratios, "reward": ep.reward, "confirmed": r, "uniform": False,
                   "previous": False, "ranking": (named or {}).get(_plan_key(ep)), "kept": ep is best}
                  for ep, r in judged]
        if incumbent is not None:
            record.append({"ratios": incumbent.ratios, "reward": incumbent.reward, "confirmed": floor,
                           "uniform": not previous, "previous": previous, "ranking": None,
                           "kept": best is incumbent})
        return best, record

    def _episode(self, explore: bool, chosen: dict[tuple[str, ...], int] | None = None) -> Episode:
        """One episode: the agent's plan, or ``chosen`` (an action per group) played for it."""
        env, agent = self.env, self.agent
        if chosen is None:
            chosen = {}
            for t, key in enumerate(env.keys):
                state = env.state(t, env.ratios(chosen))
                action = agent.act(state, env.allowed(t), explore=explore)
                chosen[key] = env.project(t, env.ratios(chosen), action) if env.budget < 1.0 else action
            if env.budget < 1.0 and not env.macs_weight:
                chosen = env.fill(chosen)
        ratios = env.ratios(chosen)
        # the transitions are the plan carried out, each state seen from the groups before it
        steps = [(env.state(t, env.ratios({k: chosen[k] for k in env.keys[:t]})), chosen[key])
                 for t, key in enumerate(env.keys)]
        episode = env.evaluate(ratios)
        if episode.macs > env.budget + 1e-9:
            raise TrainingError(f"RL: the plan {episode.ratios} leaves {episode.macs:.4f} of dense MACs, "
                                f"above the budget {env.budget:g}; this is a bug in the projection, "
                                "please report it.")
        baseline = episode.reward if self.baseline is None else self.baseline
        reward = self.reward_scale * (episode.reward - baseline)
        self.baseline = 0.9 * baseline + 0.1 * episode.reward
        if explore:
            for t, (state, action) in enumerate(steps):
                last = t == len(steps) - 1
                following, open_next = (state, None) if last else (steps[t + 1][0], env.allowed(t + 1))
                agent.remember(state, action, reward if last else 0.0, following, last, open_next)
            for _ in steps:
                agent.learn()
            agent.end_episode()
        self.episodes += 1
        return episode

    # -- resumable state --

    def state(self) -> dict[str, np.ndarray]:
        scalars = [self.episodes, np.nan if self.baseline is None else self.baseline]
        return {**self.agent.state(), "search": np.array(scalars, np.float64)}

    def load_state(self, saved: dict[str, np.ndarray]) -> None:
        self.agent.load_state(saved)
        episodes, baseline = saved["search"]
        self.episodes, self.baseline = int(episodes), None if np.isnan(baseline) else float(baseline)


def split_options(options: dict, where: str) -> tuple[dict, dict]:
    """``options`` as the environment's and the search's (its DQN's included), or a
    ConfigError naming the unknown ones and every known one, before anything trains."""
    search = {name for f in (Search.__init__, DQN.__init__)
              for name, p in inspect.signature(f).parameters.items()
              if p.kind == p.KEYWORD_ONLY} - {"seed", "epsilon_episodes"}
    unknown = sorted(set(options) - set(ENV_OPTIONS) - search)
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {', '.join(unknown)}; the options are "
                          f"{', '.join(sorted({*ENV_OPTIONS, *search}))}.")
    return ({k: v for k, v in options.items() if k in ENV_OPTIONS},
            {k: v for k, v in options.items() if k not in ENV_OPTIONS})


def _plan_key(episode: Episode) -> tuple:
    return tuple(sorted(episode.ratios.items()))


def search(model: keras.Model, data: tf.data.Dataset, *, budget: float, episodes: int = 100,
           seed: int = 0, eval_batches: int = 4, **options) -> SearchResult:
    """Search per-group ratios for a trained ``model`` within ``budget`` (fraction of dense
    MACs), judged on ``eval_batches`` of ``data`` (and ``confirm_batches`` more).
    ``options`` go to the environment (``actions``, ``max_ratio``, ``macs_weight``,
    ``importance``, ``confirm_batches``), the search (``start_uniform``, ``start_rankings``)
    or the DQN."""
    env_options, search_options = split_options(options, "search")
    env = PruningEnvironment(model, data, budget=budget, eval_batches=eval_batches, **env_options)
    return Search(env, seed=seed, epsilon_episodes=episodes, **search_options).run(episodes)
