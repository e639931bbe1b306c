"""The RL agent: its environment counts MACs as kerasprune.metrics does, its plans never
exceed the budget, the same seed gives the same policy, and a killed run resumes with the
agent it had."""
from __future__ import annotations

import json

import numpy as np
import pytest

from kerasprune import ConfigError, ModelError, TrainingError, prune
from kerasprune.agent import DQN, Episode, PruningEnvironment, RLPruning, Search, search
from kerasprune.metrics.quality import hits as _hits
from kerasprune.backend import keras, tf
from kerasprune.metrics import count_macs
from kerasprune.models import build
from kerasprune.structured import PlanCost, analyze, channel_scores, make_plan, masks, plan_channels, shrink
from kerasprune.structured.plan import Plan, removed_count


def _cnn():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(12, 3, strides=2, activation="relu", name="conv2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(24, activation="relu", name="fc1")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="logits")(x)
    return keras.Model(inputs, outputs)


def _data(n=320, batch=32):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 8, 8, 1)).astype("float32")
    y = (x[:, :4].sum(axis=(1, 2, 3)) > 0).astype("int32") + (x[:, 4:].mean(axis=(1, 2, 3)) > 0.2)
    return tf.data.Dataset.from_tensor_slices((x, y.astype("int32"))).batch(batch)


def _residual():
    """Two layers make one group through an Add; a third reads both, one of them twice."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    a = keras.layers.Dense(10, activation="relu", name="a")(inputs)
    b = keras.layers.Dense(10, activation="relu", name="b")(inputs)
    x = keras.layers.Add(name="add")([a, b])
    x = keras.layers.Dense(8, activation="relu", name="c")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="out")(keras.layers.Concatenate()([x, x]))
    return keras.Model(inputs, outputs)


MODELS = {
    "cnn": _cnn,
    "lstm": lambda: build("lstm", input_shape=(10,), num_classes=2, vocab_size=50, embed_dim=8, units=6),
    "bilstm": lambda: build("bilstm", input_shape=(10,), num_classes=2, vocab_size=50, embed_dim=8, units=6),
    "residual": _residual,
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_environment_counts_the_macs_that_metrics_count_on_the_shrunk_model(name):
    model = MODELS[name]()
    graph = analyze(model)
    cost = PlanCost(model, graph)
    rng = np.random.default_rng(1)
    scores = {c.id: float(rng.random()) for c in graph.channels}
    top = 0.4 if name == "bilstm" else 0.8  # a direction must keep a unit: a plan keeps one per group
    plans = [make_plan(graph, scores, {key: float(rng.uniform(0, top)) for key in graph.groups()})
             for _ in range(4)]  # ratios by group
    counted = [count_macs(shrink(model, plan, graph)).dense for plan in plans]
    assert [cost(plan) for plan in plans] == counted
    assert [cost(plan) for plan in reversed(plans)] == counted[::-1]  # asked again: the same count
    assert cost.dense == count_macs(model).dense


def test_counted_by_kept_channels_a_bidirectional_plan_is_never_cheaper_than_any_real_one():
    """Which units of a direction a plan keeps changes its MACs, and a plan keeps one unit
    in each direction: the count the search checks its budget on is the dearest of them."""
    model = build("bilstm", input_shape=(10,), num_classes=2, vocab_size=50, embed_dim=8, units=3)
    graph, rng = analyze(model), np.random.default_rng(0)
    cost, groups = PlanCost(model, graph), graph.groups()
    for _ in range(40):
        ratios = {key: float(rng.choice([0.0, 0.2, 0.5, 0.8])) for key in groups}
        plan = make_plan(graph, {c.id: float(rng.random()) for c in graph.channels}, ratios)
        kept = {key: sum(c.id not in plan.removed for c in channels) for key, channels in groups.items()}
        assert cost(plan) <= cost.of_kept({key: len(groups[key]) - removed_count(len(groups[key]), r)
                                           for key, r in ratios.items()})
        assert cost(plan) <= cost.of_kept(kept)


def test_a_search_on_a_bidirectional_model_stays_within_a_tight_budget():
    model = build("bilstm", input_shape=(10,), num_classes=2, vocab_size=50, embed_dim=8, units=3)
    rng = np.random.default_rng(0)
    data = tf.data.Dataset.from_tensor_slices((rng.integers(0, 50, (64, 10)), rng.integers(0, 2, 64))).batch(16)
    result = search(model, data, budget=0.35, episodes=4, seed=0, eval_batches=2, confirm_batches=0)
    assert max(e["macs"] for e in result.episodes) <= 0.35
    assert count_macs(shrink(model, result.best.plan)).dense / count_macs(model).dense <= 0.35


def test_a_budget_in_macs_picks_the_least_uniform_ratio_that_meets_it():
    model = _cnn()
    plan = plan_channels(model, macs=0.5)
    small = count_macs(shrink(model, plan)).dense / count_macs(model).dense
    looser = plan_channels(model, 0.0)
    assert small <= 0.5 and looser.removed == set()
    with pytest.raises(ConfigError, match="raise the budget"):
        plan_channels(model, macs=0.001)  # the logits layer alone holds more


@pytest.mark.parametrize("options", [{}, {"max_ratio": 0.77}, {"actions": (0.0, 0.3, 0.6)},
                                     {"importance": "activation_taylor"}])
def test_every_plan_of_a_search_stays_within_the_budget(options):
    model = _cnn()
    result = search(model, _data(), budget=0.4, episodes=12, seed=3, **options)
    assert len(result.episodes) == 13  # and one greedy episode
    assert max(e["macs"] for e in result.episodes) <= 0.4
    shrunk = count_macs(shrink(model, result.best.plan)).dense / count_macs(model).dense
    assert shrunk == pytest.approx(result.best.macs) and shrunk <= 0.4
    unconfirmed = search(model, _data(), budget=0.4, episodes=12, seed=3, confirm_batches=0, **options)
    assert unconfirmed.best.reward == max(e["reward"] for e in unconfirmed.episodes)
    played = [[{k: v for k, v in e.items() if k != "seconds"} for e in r.episodes] for r in (result, unconfirmed)]
    assert played[0] == played[1]  # the confirmation only judges, it never plays


@pytest.mark.parametrize("budget", [0.25, 0.5])
def test_a_plan_within_the_budget_leaves_no_group_room_for_one_more_step(budget):
    """The budget is used: any group cut one action less would exceed it."""
    model = _cnn()
    result = search(model, _data(), budget=budget, episodes=12, seed=5)
    env = PruningEnvironment(model, _data(), budget=budget)
    for logged in result.episodes:
        ratios = {tuple(k.split(", ")): r for k, r in logged["ratios"].items()}
        assert env._fits(ratios)
        for key, ratio in ratios.items():
            index = int(np.flatnonzero(env.actions == ratio)[0])
            if index:
                assert not env._fits({**ratios, key: float(env.actions[index - 1])}), (key, ratios)


def test_the_uniform_plan_is_the_least_common_action_that_meets_the_budget_filled_back():
    model = _cnn()
    env = PruningEnvironment(model, _data(), budget=0.5)
    chosen = env.uniform()
    common = max(chosen.values())
    assert env._fits(env.ratios(chosen)) and env.fill(chosen) == chosen
    assert env._fits(env.ratios(dict.fromkeys(env.keys, common)))
    assert not env._fits(env.ratios(dict.fromkeys(env.keys, common - 1)))
    # a group that already lost more than that keeps what it lost
    first = env.keys[0]
    lost = {c.id for c in env.groups[first][: int(0.7 * len(env.groups[first]))]}
    env.observe(model, removed=lost)
    assert env.actions[env.uniform()[first]] >= len(lost) / len(env.groups[first]) > env.actions[common]


def test_a_revised_plan_removes_the_same_channels_at_the_same_ratios_and_a_lower_ratio_brings_back_the_best():
    """Observed with the weights the cut channels had, they rank last in their group and an
    episode is judged on those weights: the plan in place replays exactly, and a group cut
    one step less gets back the channel the original ranking would have kept."""
    model = _cnn()
    env = PruningEnvironment(model, _data(), budget=0.5, eval_batches=2, confirm_batches=0)
    ratios = {key: 0.25 for key in env.keys}
    lower = {**ratios, env.keys[1]: 0.15}
    cut, before = env.plan(ratios), env.evaluate(lower).accuracy
    assert env.plan(lower).removed < cut.removed
    masked, unmasked = keras.models.clone_model(model), keras.models.clone_model(model)
    zeros = masks(model, cut, env.graph)
    masked.set_weights([w * zeros[layer.name][i] if layer.name in zeros else w
                        for layer in model.layers for i, w in enumerate(layer.get_weights())])
    unmasked.set_weights(model.get_weights())  # observe() sets the environment's model: this one
    env.observe(masked, removed=cut.removed)
    assert not env.allowed(1)[np.flatnonzero(env.actions == 0.15)[0]]  # kept removed
    env.observe(unmasked, removed=cut.removed, revive=True)
    assert env.allowed(1).all()
    assert env.plan(ratios).removed == cut.removed
    assert env.plan(lower).removed == make_plan(env.graph, channel_scores(env.graph, "l1"), lower).removed
    assert env.evaluate(lower).accuracy == before  # the revived channel computes with its old weights
    assert env.chosen({", ".join(k): r for k, r in lower.items()}) == {
        k: int(np.flatnonzero(np.isclose(env.actions, r))[0]) for k, r in lower.items()}
    with pytest.raises(ConfigError, match="none of the actions"):
        env.chosen({", ".join(k): 0.33 for k in env.keys})


def test_a_search_under_a_budget_starts_from_the_uniform_plan_unless_told_not_to():
    model = _cnn()
    env = PruningEnvironment(model, _data(), budget=0.5)
    uniform = {", ".join(k): r for k, r in env.ratios(env.uniform()).items()}
    first = search(model, _data(), budget=0.5, episodes=6, seed=3).episodes[0]
    assert first["uniform"] and first["ratios"] == uniform
    assert first["reward"] == env.evaluate(env.ratios(env.uniform())).reward
    plain = search(model, _data(), budget=0.5, episodes=6, seed=3, start_uniform=False).episodes
    assert not any(e["uniform"] for e in plain)
    lagrangian = search(model, _data(), budget=0.9, episodes=6, seed=3, macs_weight=1.0).episodes
    assert not any(e["uniform"] for e in lagrangian)  # its MACs are its own to choose


@pytest.mark.parametrize("importance", ["l1", "activation_taylor"])
def test_a_global_rankings_plan_is_its_cut_on_the_action_grid_within_the_budget(importance):
    model = _cnn()
    fc1 = model.get_layer("fc1")  # two thirds of fc1's neurons barely matter to any ranking
    kernel, bias = fc1.get_weights()
    kernel[:, 8:] *= 1e-3
    fc1.set_weights([kernel, bias])
    env = PruningEnvironment(model, _data(), budget=0.5)
    chosen = env.ranked(importance)
    ratios = env.ratios(chosen)
    assert env.cost.fraction(env.plan(ratios)) <= 0.5
    exact = plan_channels(model, importance=importance, data=_data(), scope="global", macs=0.5, batches=4)
    shares = {k: np.isin([c.id for c in env.groups[k]], list(exact.removed)).mean() for k in env.keys}
    assert shares[("fc1",)] >= 0.6 and ratios[("fc1",)] >= 0.6 > env.ratios(env.uniform())[("fc1",)]
    step = float(env.actions[1] - env.actions[0])
    # on the grid, each group within a step of the exact cut, or at the largest action
    assert all(abs(ratios[k] - shares[k]) < step + 1e-9 or ratios[k] == env.actions[-1] for k in env.keys), \
        (ratios, shares)


def test_with_start_rankings_a_search_plays_the_global_rankings_plans_after_the_uniform_one():
    model = _cnn()
    env = PruningEnvironment(model, _data(), budget=0.5)
    result = search(model, _data(), budget=0.5, episodes=6, seed=3, start_rankings=True)
    first = result.episodes[:3]
    assert first[0]["uniform"] and [e["ranking"] for e in first] == [None, "l1", "activation_taylor"]
    for e in first[1:]:
        assert e["ratios"] == {", ".join(k): r for k, r in env.ratios(env.ranked(e["ranking"])).items()}
    assert len(result.episodes) == 7  # in place of the agent's own episodes, not added to them
    assert not any(e["ranking"] for e in search(model, _data(), budget=0.5, episodes=6, seed=3).episodes)


def test_a_rankings_plan_ahead_on_both_batches_is_kept_and_named():
    env = PruningEnvironment(_cnn(), _data(), budget=0.5)
    env.evaluate = lambda ratios, confirm=False: _episode(env, 0.0, {0.1: 0.80, 0.3: 0.85}[
        next(iter(ratios.values()))])
    uniform, ranking = _episode(env, 0.1, 0.60), _episode(env, 0.3, 0.65)
    best, finalists = Search(env, seed=0)._choose([uniform, ranking], uniform, named={
        tuple(sorted(ranking.ratios.items())): "l1"})
    assert best is ranking
    assert [(f["ranking"], f["kept"]) for f in finalists] == [("l1", True), (None, False)]


def test_the_lagrangian_reward_chooses_its_own_macs_below_the_budget():
    model = _cnn()
    env = PruningEnvironment(model, _data(), budget=0.9, macs_weight=1.0)
    chosen = {key: len(env.actions) - 1 for key in env.keys}  # the most cut
    assert env.fill(chosen) != chosen  # a fill would undo it, so the search does not fill
    result = search(model, _data(), budget=0.9, episodes=12, seed=5, macs_weight=1.0)
    assert min(e["macs"] for e in result.episodes) < 0.8


def test_the_same_seed_gives_the_same_policy_and_another_seed_another():
    model = _cnn()
    runs = [search(model, _data(), budget=0.5, episodes=10, seed=s) for s in (7, 7, 8)]
    logs = [[e["ratios"] for e in r.episodes] for r in runs]
    assert logs[0] == logs[1] and runs[0].best.ratios == runs[1].best.ratios
    assert logs[0] != logs[2]


def test_an_unreachable_budget_is_refused_before_any_episode():
    with pytest.raises(ConfigError, match="cannot be met"):
        PruningEnvironment(_cnn(), _data(), budget=0.01, max_ratio=0.5)



def test_a_policy_judged_before_on_the_same_weights_is_not_run_again():
    model = _cnn()
    env = PruningEnvironment(model, _data(), budget=0.6)
    runs = []
    forward = env._forward
    env._forward = lambda x: runs.append(1) or forward(x)
    ratios = {key: 0.3 for key in env.keys}
    first, again = env.evaluate(ratios), env.evaluate(dict(ratios))
    assert (again.accuracy, again.macs, again.plan.removed) == (first.accuracy, first.macs, first.plan.removed)
    assert len(runs) == 4  # the four held-out batches, once
    env.evaluate({**ratios, env.keys[0]: 0.5})
    assert len(runs) == 8  # other ratios are judged
    for layer in model.layers:  # new weights: the same ratios are judged again
        layer.set_weights([w * 0.5 for w in layer.get_weights()])
    env.observe(model)
    env.evaluate(ratios)
    assert len(runs) == 12

def _episode(env, ratio, reward):
    ratios = {", ".join(key): ratio for key in env.keys}
    return Episode(ratios, reward, 0.5, reward, 0.0, Plan())


@pytest.mark.parametrize("confirmed, kept", [
    ({0.1: 0.80, 0.2: 0.79, 0.3: 0.85, 0.4: 0.90}, 0.4),  # ahead twice: the best confirmed of those
    ({0.1: 0.80, 0.2: 0.80, 0.3: 0.70, 0.4: 0.75}, 0.1),  # a tie on confirmation keeps uniform
    ({0.1: 0.70, 0.2: 0.75, 0.3: 0.75, 0.4: 0.60}, 0.2),  # equals confirmed: the higher first reward
])
def test_a_plan_replaces_the_uniform_one_only_if_it_is_ahead_on_the_confirmation_batches_too(confirmed, kept):
    env = PruningEnvironment(_cnn(), _data(), budget=0.5)
    agent = Search(env, seed=0)
    judged = []
    env.evaluate = lambda ratios, confirm=False: judged.append(next(iter(ratios.values()))) or \
        _episode(env, 0.0, confirmed[next(iter(ratios.values()))])
    uniform = _episode(env, 0.1, 0.60)
    # 0.5 is behind uniform where it was found, 0.6 ahead but fourth: neither is a finalist
    played = [uniform, _episode(env, 0.2, 0.70), _episode(env, 0.3, 0.65), _episode(env, 0.4, 0.62),
              _episode(env, 0.2, 0.70), _episode(env, 0.5, 0.50), _episode(env, 0.6, 0.61)]
    best, finalists = agent._choose(played, uniform)
    assert sorted(judged) == [0.1, 0.2, 0.3, 0.4]  # the three best distinct plans, then uniform
    assert next(iter(best.ratios.values())) == kept
    assert [f["kept"] for f in finalists].count(True) == 1 and finalists[-1]["uniform"]


def test_without_a_plan_ahead_of_uniform_nothing_is_judged_again_and_uniform_is_kept():
    env = PruningEnvironment(_cnn(), _data(), budget=0.5)
    env.evaluate = lambda *a, **k: pytest.fail("nothing to confirm")
    uniform = _episode(env, 0.1, 0.60)
    best, finalists = Search(env, seed=0)._choose([uniform, _episode(env, 0.2, 0.60)], uniform)
    assert best is uniform and finalists == []


def test_the_confirmation_batches_follow_the_search_batches_and_are_judged_apart():
    model = _cnn()
    env = PruningEnvironment(model, _data(), budget=0.6, eval_batches=3, confirm_batches=2)
    seen = []
    forward = env._forward
    env._forward = lambda x: seen.append(float(x[0, 0, 0, 0])) or forward(x)
    ratios = {key: 0.3 for key in env.keys}
    searched = env.evaluate(ratios)
    confirmed = env.evaluate(ratios, confirm=True)
    firsts = [float(x[0, 0, 0, 0]) for x, _ in _data().take(5)]
    assert seen == firsts  # the search's three batches, then the next two
    env.evaluate(ratios, confirm=True)
    assert len(seen) == 5  # answered from memory, apart from the search's answer
    alone = PruningEnvironment(model, _data().skip(3), budget=0.6, eval_batches=2, confirm_batches=0)
    assert confirmed.accuracy == alone.evaluate(ratios).accuracy != searched.accuracy
    assert confirmed.macs == searched.macs
    with pytest.raises(ConfigError, match="held-out data has 10 batches.*need 12"):
        PruningEnvironment(model, _data(), budget=0.6, eval_batches=8, confirm_batches=4)
    assert PruningEnvironment(model, _data(), budget=0.6, confirm_batches=0).confirms is False


def test_a_single_sigmoid_output_and_one_hot_labels_are_scored_as_accuracy():
    probabilities = np.array([[0.9], [0.2], [0.6]])
    assert _hits(probabilities, np.array([1, 0, 0])).tolist() == [True, True, False]
    assert _hits(np.array([[2.0], [-1.0]]), np.array([[1], [1]])).tolist() == [True, False]  # logits
    assert _hits(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([[0, 1], [0, 1]])).tolist() == [True, False]


def test_the_dqn_learns_which_action_pays():
    agent = DQN(3, 4, seed=0, epsilon_episodes=40, batch_size=16)
    state = np.array([0.1, 0.5, 1.0], np.float32)
    for _ in range(60):
        action = agent.act(state)
        agent.remember(state, action, 1.0 if action == 2 else 0.0, state, True)
        agent.learn()
        agent.end_episode()
    assert agent.act(state, explore=False) == 2
    assert agent.act(state, allowed=np.array([True, True, False, True]), explore=False) != 2


def test_the_value_of_the_next_state_is_its_best_action_among_those_open_there():
    """An action the agent may not take next (a group cannot go below what it already lost)
    is worth nothing to it, however high the target network rates it."""
    agent = DQN(2, 3, seed=0, batch_size=1, memory=1, gamma=1.0)
    for v in agent.online + agent.target:
        v.assign(tf.zeros_like(v))
    agent.target[-1].assign([0.0, 0.0, 10.0])  # the last layer's bias: Q(s2) = (0, 0, 10)
    state = np.zeros(2, np.float32)
    agent.remember(state, 0, 0.0, state, False, next_allowed=np.array([True, True, False]))
    assert agent.learn() == 0.0  # the goal is 0 + max(0, 0), which Q(s, 0) = 0 already is
    agent.remember(state, 0, 0.0, state, False)  # all open: the goal is 10
    assert agent.learn() == pytest.approx(9.5)  # Huber of an error of 10


def test_each_episode_logs_the_exploration_rate_it_ran_with():
    log = Search(PruningEnvironment(_cnn(), _data(), eval_batches=2), seed=0, epsilon_episodes=4).run(4).episodes
    assert [e["epsilon"] for e in log] == pytest.approx([1.0, 0.3162, 0.1, 0.0316, 0.0])  # greedy last


@pytest.mark.parametrize("options, message", [
    ({"gama": 0.5}, "unknown option.*gama.*the options are.*gamma"),
    ({"seed": "a"}, "seed"),
    ({"seed": 2**53 + 1}, "seed must be an integer from 0 to 2\\*\\*32 - 1"),
])
def test_a_misnamed_or_mistyped_agent_option_is_refused_when_the_callback_is_made(options, message):
    with pytest.raises(ConfigError, match=message):
        RLPruning(_data(), budget=0.5, **options)
    if "gama" in options:
        with pytest.raises(ConfigError, match=message):
            search(_cnn(), _data(), budget=0.5, episodes=2, **options)


def test_shrink_refuses_a_model_that_fit_left_above_the_budget(tmp_path):
    """fit stopped before the last interval (here by early stopping, after its second epoch):
    the last plan is at 0.6 of the MACs at most, not the 0.4 asked for."""
    stop = keras.callbacks.EarlyStopping(monitor="loss", min_delta=10.0, patience=0)
    model = prune(_cnn(), track_scores=False)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    agent = RLPruning(_data(128), budget=0.4, intervals=3, episodes=2, eval_batches=2, confirm_batches=2,
                      verbose=0)
    with pytest.raises(ModelError, match="has not run"):
        agent.shrink()
    model.fit(_data(), epochs=3, verbose=0, callbacks=[agent, stop])
    assert len(agent.plans) == 2
    with pytest.raises(TrainingError, match=r"after 2 of 3 intervals, at 0\.[0-9]+ of dense MACs, above the budget 0\.4"):
        agent.shrink()


def _fit(state_path, backup, kill_at=None, when="end", epochs=3, budget=0.4, layers=None, **options):
    class Kill(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == kill_at and when == "begin":
                raise KeyboardInterrupt

        def on_epoch_end(self, epoch, logs=None):
            if epoch == kill_at and when == "end":
                raise KeyboardInterrupt

    model = prune(_cnn(), track_scores=False, layers=layers)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", ["accuracy"])
    options = {"eval_batches": 2, "confirm_batches": 2, **options}
    agent = RLPruning(_data(128), budget=budget, intervals=3, episodes=6, seed=5,
                      state_path=state_path, verbose=0, **options)
    model.fit(_data(), epochs=epochs, verbose=0,
              callbacks=[agent, keras.callbacks.BackupAndRestore(str(backup)), Kill()])
    return model, agent


def test_rl_pruning_cuts_during_fit_and_the_shrunk_model_computes_the_same(tmp_path):
    model, agent = _fit(tmp_path / "agent.npz", tmp_path / "backup")
    assert [p["epoch"] for p in agent.plans] == [0, 1, 2]
    assert [p["budget"] for p in agent.plans] == pytest.approx([0.8, 0.6, 0.4])
    assert all(p["macs"] <= p["budget"] + 1e-9 for p in agent.plans)
    removed = [set(p["removed"]) for p in agent.plans]
    assert removed[0] <= removed[1] <= removed[2]  # a later plan keeps what an earlier one cut
    small = agent.shrink()
    assert count_macs(small).dense / count_macs(_cnn()).dense <= 0.4
    x = next(iter(_data()))[0]
    np.testing.assert_allclose(small(x).numpy(), model(x).numpy(), atol=1e-5)
    assert len(agent.episode_log) == 3 * 7
    assert not (tmp_path / "agent.npz").exists()  # a finished run leaves nothing to resume


def test_with_revise_the_first_interval_cuts_to_the_target_and_later_searches_start_from_the_plan_in_place(tmp_path):
    model, agent = _fit(tmp_path / "agent.npz", tmp_path / "backup", revise=True)
    assert [p["budget"] for p in agent.plans] == pytest.approx([0.4] * 3)
    assert all(p["macs"] <= 0.4 + 1e-9 for p in agent.plans)
    for before, plan in zip(agent.plans, agent.plans[1:]):
        first = next(e for e in agent.episode_log if e["interval"] == plan["interval"])
        assert first["previous"] and not first["uniform"] and first["ratios"] == before["ratios"]
    assert agent.episode_log[0]["uniform"]  # the first search starts from the uniform plan
    x = next(iter(_data()))[0]
    np.testing.assert_allclose(agent.shrink()(x).numpy(), model(x).numpy(), atol=1e-5)


def _untimed(log):
    return [{k: v for k, v in entry.items() if k != "seconds"} for entry in log]


@pytest.mark.parametrize("when", ["begin", "end"])
def test_a_killed_run_resumes_with_the_agent_and_plans_it_had(tmp_path, when):
    """Killed just after the second search (its epoch lost: the plan is re-installed, not
    searched again) or after that epoch (the third search goes on with the agent)."""
    tf.config.experimental.enable_op_determinism()
    _, unbroken = _fit(tmp_path / "a.npz", tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "b.npz", tmp_path / "b", kill_at=1, when=when)
    with np.load(tmp_path / "b.npz") as saved:
        before = json.loads(bytes(saved["record"]).decode())["fit_seconds"]  # the killed process's
    _, resumed = _fit(tmp_path / "b.npz", tmp_path / "b")
    assert [p["removed"] for p in resumed.plans] == [p["removed"] for p in unbroken.plans]
    assert _untimed(resumed.episode_log) == _untimed(unbroken.episode_log)
    assert resumed.search.agent.epsilon == unbroken.search.agent.epsilon
    assert resumed.search.agent.stored == unbroken.search.agent.stored
    # the search's share is of fit's time in both processes, not of the resumed one's alone
    assert resumed.fit_seconds > before > 0


def test_rl_pruning_needs_pruning_wrappers():
    model = _cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ModelError, match="kerasprune.prune"):
        model.fit(_data(), epochs=1, verbose=0, callbacks=[RLPruning(_data(), budget=0.5)])


@pytest.mark.parametrize("other", [{"budget": 0.5}, {"eval_batches": 1}, {"confirm_batches": 1},
                                   {"importance": "activation_taylor"}, {"gamma": 0.5}, {"revise": True},
                                   {"start_rankings": True}])
def test_a_state_file_of_another_run_is_refused(tmp_path, other):
    """Another budget, evaluation, environment or agent setting: resuming would mix searches."""
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "agent.npz", tmp_path / "a", kill_at=0)
    with pytest.raises(ConfigError, match="holds the agent of another run"):
        _fit(tmp_path / "agent.npz", tmp_path / "b", **other)


def test_a_fit_too_short_for_the_intervals_and_an_unwrapped_reader_are_refused_before_a_search(tmp_path):
    with pytest.raises(ConfigError, match="fit runs 2 epochs"):
        _fit(None, tmp_path / "a", epochs=2)
    with pytest.raises(ModelError, match="which no pruning wrapper masks"):
        _fit(None, tmp_path / "b", layers=["conv1", "conv2"])  # fc1 reads conv2's filters
