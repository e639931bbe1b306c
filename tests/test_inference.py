"""Activation-based pruning at inference: thresholds, hysteresis, exact reactivation,
swaps under concurrent requests, and saved state."""
import json
import threading

import numpy as np
import pytest

from kerasprune import ConfigError, FileError, ModelError
from kerasprune.backend import keras, tf
from kerasprune.inference import AdaptiveInference, UsageMonitor, serving
from kerasprune.structured import Plan, mask


def _model() -> keras.Model:
    """hidden unit j is relu(x_j): the traffic sets each unit's activity exactly."""
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, activation="relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(2, activation="softmax", name="out")(hidden)
    model = keras.Model(inputs, outputs, name="probe_net")
    model.get_layer("hidden").set_weights([np.eye(4, 3, dtype="float32"), np.zeros(3, "float32")])
    model.get_layer("out").set_weights([np.arange(6, dtype="float32").reshape(3, 2) / 6,
                                        np.zeros(2, "float32")])
    return model


def _traffic(third: float, n: int = 8) -> np.ndarray:
    """A batch in which units 0 and 1 fire at 1.0 and unit 2 at ``third``."""
    return np.tile(np.array([[1.0, 1.0, third, 0.5]], "float32"), (n, 1))


def _at_score(score: float) -> float:
    """Unit 2's activation whose activity over its layer's mean is ``score``."""
    return 2 * score / (3 - score)


def _server(model, **kwargs) -> AdaptiveInference:
    settings = dict(decay=0.0, probe_every=1, decide_every=1, warmup=1)
    return AdaptiveInference(model, **{**settings, **kwargs})


def test_monitor_reports_mean_activation_and_firing_rate_per_unit():
    monitor = UsageMonitor(_model(), decay=0.0)
    batch = np.array([[2.0, 0.0, 1.0, 0.0], [0.0, 0.0, 3.0, 0.0]], "float32")
    monitor(batch)
    assert monitor.mean.tolist() == pytest.approx([1.0, 0.0, 2.0])
    assert monitor.firing.tolist() == pytest.approx([0.5, 0.0, 1.0])
    assert list(monitor.scores().values()) == pytest.approx([1.0, 0.0, 2.0])  # over the mean, 1.0


def test_padding_positions_are_not_traffic():
    """The column only the padding token uses is the quiet one, however long the padding."""
    inputs = keras.Input((5,), dtype="int32")
    embedded = keras.layers.Embedding(3, 2, mask_zero=True, name="emb")(inputs)
    pooled = keras.layers.GlobalAveragePooling1D()(embedded)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(pooled))
    model.get_layer("emb").set_weights([np.array([[0, 1], [1, 0], [2, 0]], "float32")])  # 0 pads
    monitor = UsageMonitor(model, decay=0.0)
    monitor(np.array([[1, 0, 0, 0, 0], [2, 2, 0, 0, 0]], "int32"))
    assert monitor.mean.tolist() == pytest.approx([5 / 3, 0.0])  # over the 3 tokens, not 10 positions
    assert monitor.firing.tolist() == pytest.approx([1.0, 0.0])


def test_a_unit_batch_normalization_turns_into_a_constant_stays():
    """Zero after its ReLU, unit 2 still hands the next layer the normalization's shift."""
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, activation="relu", name="hidden")(inputs)
    normed = keras.layers.BatchNormalization(name="bn")(hidden)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(normed))
    model.get_layer("hidden").set_weights([np.eye(4, 3, dtype="float32"), np.zeros(3, "float32")])
    gamma, beta, mean, variance = model.get_layer("bn").get_weights()
    model.get_layer("bn").set_weights([gamma, beta + 1, mean, variance])
    server = _server(model, probe_every=2)
    server.predict(_traffic(0.0))
    assert not server.removed
    np.testing.assert_allclose(server.predict(_traffic(0.0)), model.predict(_traffic(0.0), verbose=0),
                               rtol=1e-6)  # batch 2 is not a probe


def test_a_mixed_float16_model_is_measured_in_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _model()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    server = _server(model)
    server.predict(_traffic(0.0))
    assert server.monitor.mean.tolist() == pytest.approx([1.0, 1.0, 0.0])
    assert len(server.removed) == 1


def test_a_unit_is_pruned_below_the_threshold_and_returns_only_above_the_higher_one():
    server = _server(_model(), prune_below=0.05, reactivate_above=0.10)
    server.predict(_traffic(1.0))
    assert not server.removed
    server.predict(_traffic(_at_score(0.04)))
    assert len(server.removed) == 1
    server.predict(_traffic(_at_score(0.08)))  # between the thresholds: stays out
    assert len(server.removed) == 1
    server.predict(_traffic(_at_score(0.12)))
    assert not server.removed
    server.predict(_traffic(_at_score(0.08)))  # between the thresholds: stays in
    assert not server.removed
    assert [e["event"] for e in server.events] == ["prune", "swap", "reactivate", "swap"]


def test_the_compacted_model_computes_what_the_masked_full_model_does():
    model = _model()
    server = _server(model, probe_every=3)
    server.predict(_traffic(0.0))
    assert server.serving.model.get_layer("hidden").units == 2
    batch = np.random.default_rng(0).random((5, 4)).astype("float32")
    expected = mask(model, Plan(set(server.removed))).predict(batch, verbose=0)
    np.testing.assert_allclose(server.predict(batch), expected, rtol=1e-6)  # batch 2 is not a probe


def test_reactivation_restores_the_original_weights_bit_for_bit():
    model = _model()
    original = [w.copy() for w in model.get_weights()]
    server = _server(model)
    server.predict(_traffic(0.0))
    assert server.serving.model is not model
    server.predict(_traffic(1.0))
    assert server.serving.model is model
    for before, after in zip(original, server.serving.model.get_weights()):
        assert np.array_equal(before, after)


def test_a_group_keeps_at_least_min_units():
    server = _server(_model(), min_units=2)
    server.predict(np.tile(np.array([[1.0, 0.0, 0.0, 0.0]], "float32"), (4, 1)))
    assert len(server.removed) == 1


def test_concurrent_requests_during_swaps_only_see_complete_models():
    model = _model()
    server = _server(model, probe_every=2, background=True)
    models = [model]
    server.on("swap", lambda info: models.append(server.serving.model))
    traffic = [_traffic(0.0, 3), _traffic(1.0, 3)]  # unit 2 off, then on again
    now = [0]
    answers, errors, stop = [], [], threading.Event()

    def client():
        while not stop.is_set():
            kind = now[0]
            try:
                answers.append((kind, server.predict(traffic[kind])))
            except Exception as exc:  # noqa: BLE001  (any failure fails the test below)
                errors.append(exc)

    clients = [threading.Thread(target=client) for _ in range(3)]
    for thread in clients:
        thread.start()
    for i in range(12):  # every client sends the current kind of traffic
        now[0] = (i // 3) % 2
        for _ in range(4):
            server.predict(traffic[now[0]])
        server.wait()
    stop.set()
    for thread in clients:
        thread.join()
    server.close()
    assert not errors
    assert len(models) >= 4 and answers  # pruned and restored at least twice
    possible = [[m.predict(batch, verbose=0) for batch in traffic] for m in models]
    for kind, answer in answers:
        assert any(np.allclose(answer, p[kind], atol=1e-6) for p in possible)


def test_a_decision_is_made_at_its_probe_while_another_probe_is_observed_meanwhile(monkeypatch):
    server = _server(_model(), decide_every=2)  # decisions at the 1st, 3rd, ... observed probe
    both_observed = threading.Barrier(2, timeout=30)
    observe = server.monitor.observe

    def observe_then_wait(*args):
        count = observe(*args)
        both_observed.wait()  # the other thread's probe is counted before this one decides
        return count

    monkeypatch.setattr(server.monitor, "observe", observe_then_wait)
    errors = []

    def client():
        try:
            server.predict(_traffic(0.0))
        except Exception as exc:  # noqa: BLE001  (any failure fails the test below)
            errors.append(exc)

    clients = [threading.Thread(target=client) for _ in range(2)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    assert not errors
    assert len(server.removed) == 1  # the first probe's decision was made


def test_a_failed_background_build_is_not_reported_as_served_and_is_tried_again(monkeypatch):
    shrink, calls = serving.shrink, []

    def out_of_memory_once(*args):
        calls.append(args)
        if len(calls) == 1:
            raise MemoryError("no room for the compacted model")
        return shrink(*args)

    monkeypatch.setattr(serving, "shrink", out_of_memory_once)
    failed = threading.Event()
    with _server(_model(), background=True) as server:
        server.on("error", lambda info: failed.set())
        server.predict(_traffic(0.0))
        assert failed.wait(30)
        assert not server.removed and server.summary()["active"] == {"hidden": "3/3"}
        assert not server.summary()["swap_pending"]
        server.predict(_traffic(0.0))  # the next decision prunes again, and this build works
        server.wait()
        assert len(server.serving.removed) == 1 and server.serving.removed == server.removed


def test_saved_state_restores_the_same_masks_and_statistics(tmp_path):
    model = _model()
    server = _server(model)
    server.predict(_traffic(0.0))
    path = server.save(tmp_path / "state.json")
    again = _server(model)
    again.restore(path)
    assert again.removed == server.removed
    assert again.monitor.mean.tolist() == server.monitor.mean.tolist()
    assert again.serving.model.get_layer("hidden").units == 2


def test_restoring_a_missing_or_foreign_state_says_what_is_wrong(tmp_path):
    server = _server(_model())
    with pytest.raises(FileError, match="no such file"):
        server.restore(tmp_path / "nothing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(FileError, match="not a saved state"):
        server.restore(tmp_path / "bad.json")
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, activation="relu"),
                              keras.layers.Dense(2)], name="other")
    _server(other).save(tmp_path / "other.json")
    with pytest.raises(ConfigError, match="saved for model 'other'"):
        server.restore(tmp_path / "other.json")


@pytest.mark.parametrize("damage, error, message", [
    (lambda state: state.pop("probes"), FileError, r"not a saved state \(no probes\)"),
    (lambda state: state["monitor"].pop("observed"), FileError, "not a saved state"),
    (lambda state: state["monitor"]["mean"].pop(), FileError, "must be 3 numbers each"),
    (lambda state: state.update(removed=["2"]), FileError, "whole numbers"),
    (lambda state: state.update(removed=[999]), ConfigError, r"removed channels \[999\] are not"),
])
def test_a_damaged_state_is_refused_whole_and_changes_nothing(tmp_path, damage, error, message):
    model = _model()
    server = _server(model)
    server.predict(_traffic(0.0))
    state = server.state()
    damage(state)
    (tmp_path / "state.json").write_text(json.dumps(state))
    fresh = _server(model)
    with pytest.raises(error, match=message):
        fresh.restore(tmp_path / "state.json")
    assert fresh.monitor.observed == 0 and not fresh.monitor.mean.any()
    assert not fresh.removed and fresh.batches == 0


def test_models_it_cannot_serve_are_refused_with_the_fix():
    a, b = keras.Input((4,)), keras.Input((4,))
    hidden = keras.layers.Dense(3, activation="relu")(keras.layers.Concatenate()([a, b]))
    with pytest.raises(ModelError, match=r"2 input\(s\) and 1 output\(s\)"):
        AdaptiveInference(keras.Model([a, b], keras.layers.Dense(2)(hidden)))
    hidden = keras.layers.Dense(3, activation="relu")(a)
    with pytest.raises(ModelError, match=r"1 input\(s\) and 2 output\(s\)"):
        AdaptiveInference(keras.Model(a, [keras.layers.Dense(2)(hidden), keras.layers.Dense(2)(hidden)]))
    with pytest.raises(ModelError, match="is not built; build the model first"):
        AdaptiveInference(keras.Sequential([keras.layers.Dense(3, activation="relu"), keras.layers.Dense(2)]))


def test_a_float64_tensor_is_served_as_the_model_s_float32():
    server = _server(_model())
    batch = _traffic(0.5)
    np.testing.assert_allclose(server.predict(tf.constant(batch, tf.float64)), server.predict(batch))


def test_bad_settings_and_batches_are_refused_with_the_fix():
    with pytest.raises(ConfigError, match="must be above prune_below"):
        AdaptiveInference(_model(), prune_below=0.2, reactivate_above=0.1)
    with pytest.raises(ConfigError, match="statistic must be one of"):
        AdaptiveInference(_model(), statistic="median")
    with pytest.raises(ConfigError, match=r"add the batch axis"):
        _server(_model()).predict(np.zeros(4, "float32"))
