"""A small deep Q-network (Mnih et al. 2015) over discrete actions, in TensorFlow.

tf-agents would be the maintained choice, but its latest release (0.19.0) pins
tensorflow-probability ~=0.23 (the TensorFlow 2.15 line), typing-extensions ==4.5.0 and
pygame ==2.1.3, so this is the minimum the agent needs: an MLP for
Q(s, .), a target copy synced every ``target_every`` updates, a replay memory, epsilon-
greedy exploration decaying geometrically from ``epsilon_start`` to ``epsilon_end`` over
``epsilon_episodes`` episodes, and Adam.  Every
draw comes from one seeded generator and the network is built from the seed, so the same
seed and the same rewards give the same actions; :meth:`state` / :meth:`load_state` carry
all of it (weights, optimizer moments, memory, generator) across a kill.
"""
from __future__ import annotations

import json

import numpy as np

from ..backend import tf
from ..checks import number
from ..errors import ConfigError


class DQN:
    """Q-learning agent: :meth:`act` picks an action, :meth:`remember` stores a transition
    and :meth:`learn` takes a gradient step on a replayed minibatch."""

    def __init__(self, state_size: int, actions: int, *, seed: int = 0, hidden: int = 64,
                 gamma: float = 0.99, learning_rate: float = 1e-3, epsilon_start: float = 1.0,
                 epsilon_end: float = 0.01, epsilon_episodes: int = 100, memory: int = 5000,
                 batch_size: int = 32, target_every: int = 50) -> None:
        self.gamma = number(gamma, "DQN gamma", low=0.0, high=1.0)
        self.learning_rate = number(learning_rate, "DQN learning_rate", low=0.0, low_open=True)
        self.epsilon_end = number(epsilon_end, "DQN epsilon_end", low=0.0, high=1.0)
        self.epsilon = number(epsilon_start, "DQN epsilon_start", low=self.epsilon_end, high=1.0)
        episodes = number(epsilon_episodes, "DQN epsilon_episodes", low=1, integer=True)
        # geometric: epsilon_end after ``epsilon_episodes`` episodes (kept there)
        self.epsilon_decay = (max(self.epsilon_end, 1e-6) / max(self.epsilon, 1e-6)) ** (1.0 / episodes)
        self.batch_size = number(batch_size, "DQN batch_size", low=1, integer=True)
        self.target_every = number(target_every, "DQN target_every", low=1, integer=True)
        capacity = number(memory, "DQN memory", low=self.batch_size, integer=True)
        if actions < 2:
            raise ConfigError(f"DQN: need at least 2 actions to choose from, got {actions}.")
        self.state_size, self.actions = int(state_size), int(actions)
        self.rng = np.random.default_rng(seed)
        sizes = [self.state_size, hidden, hidden, self.actions]
        init = [self.rng.normal(0, np.sqrt(2.0 / a), (a, b)).astype(np.float32) for a, b in zip(sizes, sizes[1:])]
        self.online = [tf.Variable(w) for w in init] + [tf.Variable(np.zeros(b, np.float32)) for b in sizes[1:]]
        self.target = [tf.Variable(v) for v in self.online]
        self.moments = [tf.Variable(tf.zeros_like(v)) for v in self.online for _ in range(2)]
        self.updates = tf.Variable(0, dtype=tf.int64)
        # "allowed2": the actions open in the next state, which alone its value is the best of
        self.memory = {"s": np.zeros((capacity, state_size), np.float32), "a": np.zeros(capacity, np.int32),
                       "r": np.zeros(capacity, np.float32), "s2": np.zeros((capacity, state_size), np.float32),
                       "done": np.zeros(capacity, np.float32),
                       "allowed2": np.ones((capacity, self.actions), np.float32)}
        self.stored = 0  # transitions ever stored (the memory is a ring)
        # one traced step per agent, over its own variables (a shared one would be reused
        # across agents of other sizes)
        self._train = tf.function(
            lambda *batch: _step(self.online, self.target, self.moments, self.updates, *batch,
                                 self.gamma, self.learning_rate), autograph=False)

    def q_values(self, states: np.ndarray) -> np.ndarray:
        return _forward(self.online, tf.constant(np.atleast_2d(states), tf.float32)).numpy()

    def act(self, state: np.ndarray, allowed: np.ndarray | None = None, explore: bool = True) -> int:
        """Epsilon-greedy over the ``allowed`` actions (a boolean per action; all by default)."""
        allowed = np.ones(self.actions, bool) if allowed is None else np.asarray(allowed, bool)
        if not allowed.any():
            raise ConfigError("DQN.act: no action is allowed.")
        if explore and self.rng.random() < self.epsilon:
            return int(self.rng.choice(np.flatnonzero(allowed)))
        q = np.where(allowed, self.q_values(state)[0], -np.inf)
        return int(np.argmax(q))

    def remember(self, state, action: int, reward: float, next_state, done: bool,
                 next_allowed: np.ndarray | None = None) -> None:
        """Store a transition; ``next_allowed`` (a boolean per action; all by default) are the
        actions :meth:`act` may take in ``next_state``, the only ones its value is taken over."""
        i = self.stored % len(self.memory["a"])
        allowed = np.ones(self.actions, bool) if next_allowed is None else np.asarray(next_allowed, bool)
        if not done and not allowed.any():
            raise ConfigError("DQN.remember: no action is allowed in the next state.")
        for key, value in (("s", state), ("a", action), ("r", reward), ("s2", next_state), ("done", done),
                           ("allowed2", allowed)):
            self.memory[key][i] = value
        self.stored += 1

    def learn(self) -> float | None:
        """One Adam step on a replayed minibatch (None until the memory holds one)."""
        size = min(self.stored, len(self.memory["a"]))
        if size < self.batch_size:
            return None
        pick = self.rng.choice(size, self.batch_size, replace=False)
        batch = [tf.constant(self.memory[k][pick]) for k in ("s", "a", "r", "s2", "done", "allowed2")]
        loss = self._train(*batch)
        if int(self.updates.numpy()) % self.target_every == 0:
            for t, o in zip(self.target, self.online):
                t.assign(o)
        return float(loss.numpy())

    def end_episode(self) -> None:
        self.epsilon = max(self.epsilon_end, self.epsilon * self.epsilon_decay)

    # -- resumable state --

    def state(self) -> dict[str, np.ndarray]:
        out = {f"online{i}": v.numpy() for i, v in enumerate(self.online)}
        out.update({f"target{i}": v.numpy() for i, v in enumerate(self.target)})
        out.update({f"moment{i}": v.numpy() for i, v in enumerate(self.moments)})
        out.update({f"memory_{k}": v for k, v in self.memory.items()})
        out["scalars"] = np.array([self.epsilon, self.stored, int(self.updates.numpy())], np.float64)
        out["rng"] = np.frombuffer(json.dumps(self.rng.bit_generator.state).encode(), np.uint8)
        return out

    def load_state(self, saved: dict[str, np.ndarray]) -> None:
        for prefix, variables in (("online", self.online), ("target", self.target), ("moment", self.moments)):
            for i, v in enumerate(variables):
                v.assign(saved[f"{prefix}{i}"])
        missing = [key for key in self.memory if f"memory_{key}" not in saved]
        if missing:
            raise ConfigError(f"DQN: the saved agent has no {', '.join(missing)} in its memory: an "
                              "earlier kerasprune saved it, whose agent learned otherwise; delete its "
                              "state file to search afresh.")
        for key in self.memory:
            self.memory[key][...] = saved[f"memory_{key}"]
        epsilon, stored, updates = saved["scalars"]
        self.epsilon, self.stored = float(epsilon), int(stored)
        self.updates.assign(int(updates))
        self.rng.bit_generator.state = json.loads(bytes(saved["rng"]).decode())


def _forward(weights, x):
    layers = len(weights) // 2
    for i in range(layers):
        x = tf.matmul(x, weights[i]) + weights[layers + i]
        if i < layers - 1:
            x = tf.nn.relu(x)
    return x


def _step(online, target, moments, updates, s, a, r, s2, done, allowed2, gamma, lr):
    """Huber TD error against the target network's best action among those open in the next
    state (an action the agent may not take there has no value to it), then Adam (beta 0.9
    / 0.999)."""
    q_next = tf.where(allowed2 > 0, _forward(target, s2), tf.float32.min)
    best_next = tf.where(done > 0, 0.0, tf.reduce_max(q_next, axis=1))
    goal = r + gamma * best_next
    with tf.GradientTape() as tape:
        q = tf.gather(_forward(online, s), a, axis=1, batch_dims=1)
        error = tf.abs(goal - q)
        loss = tf.reduce_mean(tf.where(error < 1.0, 0.5 * tf.square(error), error - 0.5))
    grads = tape.gradient(loss, online)
    updates.assign_add(1)
    t = tf.cast(updates, tf.float32)
    for i, (v, g) in enumerate(zip(online, grads)):
        m, u = moments[2 * i], moments[2 * i + 1]
        m.assign(0.9 * m + 0.1 * g)
        u.assign(0.999 * u + 0.001 * tf.square(g))
        v.assign_sub(lr * (m / (1 - 0.9 ** t)) / (tf.sqrt(u / (1 - 0.999 ** t)) + 1e-7))
    return loss
