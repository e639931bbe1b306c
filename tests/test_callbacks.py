"""AdaptivePruning inside fit: exact sparsity, feedback, logging, kill-and-resume."""
from __future__ import annotations

import numpy as np
import pytest

from kerasprune import prune, strip
from kerasprune.backend import keras, tf
from kerasprune.errors import ConfigError, ModelError
from kerasprune.sparsity.callbacks import AdaptivePruning, KeepBest
from kerasprune.sparsity.prune import wrappers

RNG = np.random.default_rng(0)
X = RNG.standard_normal((64, 12)).astype("float32")
Y = (X[:, :3].sum(axis=1) > 0).astype("int32")


def _model(seed: int = 0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12,))
    x = keras.layers.Dense(16, activation="relu", name="a")(inputs)
    x = keras.layers.Dense(8, activation="relu", name="b")(x)
    model = prune(keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="c")(x)))
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _fit(model, callbacks, epochs):
    return model.fit(X, Y, validation_data=(X, Y), epochs=epochs, batch_size=16, shuffle=False,
                     verbose=0, callbacks=callbacks)


class _ForceMetric(keras.callbacks.Callback):
    """Replaces the monitored metric, to drive the feedback loop deterministically."""

    def __init__(self, values):
        super().__init__()
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["val_accuracy"] = self.values[epoch]


def test_each_layer_reaches_exactly_its_scheduled_sparsity():
    model = _model()
    pruning = AdaptivePruning(initial=0.5, final=0.75, step=0.25, every=1, scope="layer")
    history = _fit(model, [_ForceMetric([0.9] * 4), pruning], epochs=4)
    for w in wrappers(model):
        n = int(np.prod(w.masks[0].shape))
        assert int(np.sum(w.masks[0].numpy() == 0)) == round(0.75 * n)
    assert history.history["pruning_target"] == [0.5, 0.75, 0.75, 0.75]
    assert history.history["pruning_action"][:2] == [1.0, 1.0]


def test_feedback_holds_then_rolls_back_the_masks_on_a_forced_drop():
    model = _model()
    pruning = AdaptivePruning(initial=0.3, final=0.9, step=0.3, every=1, recovery_epochs=2,
                              mode="guard", scope="layer")
    masks_at_30 = []

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:  # the 30% masks (4 batches an epoch: steps apply at once)
                masks_at_30.extend(w.masks[0].numpy().copy() for w in wrappers(self.model))

    _fit(model, [_ForceMetric([0.9, 0.9, 0.5, 0.5, 0.5]), pruning, Snapshot()], epochs=5)
    assert [d["action"] for d in pruning.decisions] == ["step", "step", "hold", "hold", "rollback"]
    for w, before in zip(wrappers(model), masks_at_30):
        np.testing.assert_array_equal(w.masks[0].numpy(), before)


@pytest.mark.parametrize("rewire, unknown_length", [(False, False), (True, False), (False, True)])
def test_kill_and_resume_reproduces_the_masks(tmp_path, rewire, unknown_length):
    """Also where Keras does not know the epoch's length: the resumed run ramps its first
    epoch over the length the killed run counted, not all at once after validation."""
    tf.config.experimental.enable_op_determinism()
    unknown = tf.data.Dataset.from_tensor_slices((X, Y)).filter(lambda x, y: True).batch(16)

    def run(directory, crash_at=None):
        class Crash(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == crash_at:
                    raise KeyboardInterrupt

        model = _model()
        # 0.3, 0.6, then 0.8 from the fourth epoch on: rewiring (if on) runs after the kill
        callbacks = [AdaptivePruning(initial=0.3, final=0.8, step=0.3, every=1, frequency=2,
                                     rewire=rewire, verbose=0),
                     keras.callbacks.BackupAndRestore(str(directory)), Crash()]
        if unknown_length:
            return model, model.fit(unknown, validation_data=(X, Y), epochs=6, verbose=0,
                                    callbacks=callbacks).history
        return model, _fit(model, callbacks, epochs=6).history

    uninterrupted, logs = run(tmp_path / "a")
    assert not rewire or sum(logs["pruning_revived"][3:]) > 0
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", crash_at=2)
    resumed, _ = run(tmp_path / "b")
    for a, b in zip(wrappers(uninterrupted), wrappers(resumed)):
        np.testing.assert_array_equal(a.masks[0].numpy(), b.masks[0].numpy())
        np.testing.assert_array_equal(a.state.numpy(), b.state.numpy())


def test_the_stripped_model_computes_what_the_masked_model_does():
    model = _model()
    _fit(model, [AdaptivePruning(initial=0.5, final=0.8, every=1, verbose=0)], epochs=3)
    np.testing.assert_allclose(strip(model).predict(X, verbose=0), model.predict(X, verbose=0), atol=1e-6)


def test_settings_the_feedback_loop_cannot_honour_are_refused_and_valid_ones_are_not():
    from kerasprune.sparsity.schedules import FeedbackSchedule

    with pytest.raises(ConfigError, match="monitors 'val_loss', which is better lower.*higher_is_better=False"):
        AdaptivePruning(FeedbackSchedule(final=0.5), monitor="val_loss")
    model = _model()
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"], steps_per_execution=4)
    with pytest.raises(ConfigError, match="AdaptivePruning counts single batches.*steps_per_execution=1"):
        _fit(model, [AdaptivePruning(verbose=0)], epochs=1)
    for metrics in ({"weighted_metrics": ["accuracy"]}, {"metrics": {"prune_c": ["accuracy"]}}):
        model.compile("sgd", "sparse_categorical_crossentropy", **metrics)  # val_accuracy is logged
        assert "val_accuracy" in _fit(model, [AdaptivePruning(verbose=0)], epochs=1).history


def test_a_missing_monitor_and_an_unpruned_model_get_specific_errors():
    with pytest.raises(ConfigError, match="monitors 'val_auc'.*validation_data"):
        _fit(_model(), [AdaptivePruning(monitor="val_auc")], epochs=1)
    with pytest.raises(ConfigError, match=r"ramp=\) must be one of"):
        AdaptivePruning(ramp="cubic")
    plain = keras.Sequential([keras.Input((12,)), keras.layers.Dense(2)])
    plain.compile("sgd", "mse")
    with pytest.raises(ModelError, match="kerasprune.prune"):
        plain.fit(X, np.zeros((64, 2)), epochs=1, verbose=0, callbacks=[AdaptivePruning()])


def test_a_step_ramps_in_over_the_next_epoch_and_lands_exactly():
    from kerasprune.sparsity.prune import model_sparsity

    model = _model()
    seen, validated = [], []

    class Watch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(round(model_sparsity(self.model), 3))

        def on_test_begin(self, logs=None):
            validated.append(round(model_sparsity(self.model), 3))

    pruning = AdaptivePruning(initial=0.4, final=0.8, step=0.4, every=1, frequency=1, scope="layer")
    model.fit(X, Y, validation_data=(X, Y), epochs=3, batch_size=4, shuffle=False, verbose=0,
              callbacks=[_ForceMetric([0.9] * 3), pruning, Watch()])
    epoch2 = seen[16:32]  # 16 batches an epoch; 3 epochs: the first step goes to the final 0.8
    assert epoch2[0] < epoch2[7] < epoch2[14] < epoch2[15] and len(set(epoch2)) > 8
    # From dense to 0.8, halfway through: density sqrt(0.2) (geometric), not sparsity 0.4.
    assert epoch2[7] == pytest.approx(1 - 0.2 ** 0.5, abs=0.01)
    assert validated[1] == epoch2[15] == round(model_sparsity(model), 3)  # validated at the level
    for w in wrappers(model):
        n = int(np.prod(w.masks[0].shape))
        assert int(np.sum(w.masks[0].numpy() == 0)) == round(0.8 * n)  # exact after the last ramp


def test_rewiring_moves_the_masks_while_the_level_holds_and_keeps_it_exact():
    def run(rewire):
        model = _model()
        masks = []

        class Snapshot(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                masks.append(np.concatenate([w.masks[0].numpy().ravel() for w in wrappers(self.model)]))

        # 70% of 336 weights is 235.2: the exact mask falls short by a fraction of a weight
        pruning = AdaptivePruning(initial=0.7, final=0.7, step=0.25, every=1, frequency=2,
                                  rewire=rewire, verbose=0)
        history = _fit(model, [_ForceMetric([0.9] * 6), pruning, Snapshot()], epochs=6)
        return masks, history.history

    fixed, _ = run(rewire=False)
    assert all(np.array_equal(m, fixed[1]) for m in fixed[2:])  # the mask freezes after its step
    moving, logs = run(rewire=True)
    assert any(not np.array_equal(m, moving[1]) for m in moving[2:])
    assert all(int((m == 0).sum()) == int((moving[1] == 0).sum()) for m in moving[2:])
    assert logs["pruning_revived"][0] == 0 and sum(logs["pruning_revived"][2:]) > 0
    assert sum(logs["pruning_revived"][2:]) >= int((moving[-1] != moving[1]).sum()) // 2


def test_adaptive_pruning_runs_under_a_distribution_strategy():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = _model()
    pruning = AdaptivePruning(initial=0.5, final=0.75, step=0.25, every=1, scope="layer", verbose=0)
    _fit(model, [_ForceMetric([0.9] * 3), pruning], epochs=3)
    for w in wrappers(model):  # 4 batches an epoch, halved at each epoch end: ((4/2 + 4)/2 + 4)/2
        assert float(w.score_counts[0].numpy()) == 3.5 and w.taylor_scores()[0].sum() > 0
    for w in wrappers(model):
        n = int(np.prod(w.masks[0].shape))
        assert int(np.sum(w.masks[0].numpy() == 0)) == round(0.75 * n)


def test_steps_ramp_in_when_keras_does_not_know_the_epoch_length():
    model = _model()
    unknown = tf.data.Dataset.from_tensor_slices((X, Y)).filter(lambda x, y: True).batch(4)
    assert int(unknown.cardinality()) < 0
    pruning = AdaptivePruning(initial=0.4, final=0.8, step=0.4, every=1, frequency=2, scope="layer",
                              verbose=0)
    model.fit(unknown, validation_data=(X, Y), epochs=3, verbose=0,
              callbacks=[_ForceMetric([0.9] * 3), pruning])
    assert pruning._epoch_length == 16
    for w in wrappers(model):
        n = int(np.prod(w.masks[0].shape))
        assert int(np.sum(w.masks[0].numpy() == 0)) == round(0.8 * n)


def _snapshots():
    """Weights at every epoch end, to compare with what KeepBest hands back."""
    taken = []

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            taken.append([w.numpy().copy() for w in self.model.weights])

    return taken, Snapshot()


def test_keep_best_ends_on_the_best_epoch_at_the_target_sparsity(tmp_path):
    model = _model()
    taken, snapshot = _snapshots()
    # epoch 1 (dense) scores best of all, but only epochs at 75% may be handed back
    metric = _ForceMetric([0.99, 0.6, 0.8, 0.7])
    pruning = AdaptivePruning(initial=0.5, final=0.75, step=0.25, every=1, scope="layer",
                              mode="guard", tolerance=1.0, verbose=0)
    keep = KeepBest(tmp_path / "best", min_sparsity=0.75)
    _fit(model, [metric, keep, snapshot, pruning], epochs=4)  # keep what was validated
    assert keep.best_epoch == 2 and keep.best == 0.8
    for now, then in zip(model.weights, taken[2]):
        np.testing.assert_array_equal(now.numpy(), then)
    assert not (tmp_path / "best").exists()  # nothing left behind once restored


def test_keep_best_never_hands_back_an_epoch_short_of_the_sparsity(tmp_path):
    class Sparsity(keras.callbacks.Callback):  # what SparsityHistory would log
        def on_epoch_end(self, epoch, logs=None):
            logs["sparsity"] = [0.976, 0.9799, 0.98][epoch]

    keep = KeepBest(tmp_path / "best", min_sparsity=0.98)
    _fit(_model(), [_ForceMetric([0.99, 0.95, 0.9]), Sparsity(), keep], epochs=3)
    # 0.976 keeps 20% more weights than 0.98 asks: not eligible; 0.9799 is rounding
    assert keep.best_epoch == 1 and keep.best == 0.95


def test_keep_best_says_so_when_no_epoch_reached_the_sparsity(tmp_path, capsys):
    keep = KeepBest(tmp_path / "best", min_sparsity=0.5)
    _fit(_model(), [keep], epochs=2)  # never pruned
    assert keep.best_epoch is None
    assert "no epoch ended at sparsity 0.5 (the whole model's; the highest was 0.000)" in capsys.readouterr().err


def test_keep_best_remembers_the_best_epoch_across_a_kill(tmp_path):
    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    model = _model()
    with pytest.raises(KeyboardInterrupt):
        _fit(model, [_ForceMetric([0.9, 0.5]), KeepBest(tmp_path / "best"), Crash()], epochs=2)
    taken, snapshot = _snapshots()
    keep = KeepBest(tmp_path / "best")
    _fit(model, [_ForceMetric([0.6, 0.7]), keep, snapshot], epochs=2)  # never beats 0.9
    assert keep.best_epoch == 0 and keep.best == 0.9
    assert not any(np.array_equal(model.weights[0].numpy(), t[0]) for t in taken)


def test_keep_best_without_the_monitor_says_what_is_missing(tmp_path):
    with pytest.raises(ConfigError, match="KeepBest monitors 'val_accuracy'.*validation_data"):
        _model().fit(X, Y, epochs=1, verbose=0, callbacks=[KeepBest(tmp_path / "b")])


def test_decisions_reach_tensorboard_as_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = _model()
    pruning = AdaptivePruning(initial=0.5, final=0.75, step=0.25, every=1, scope="layer", verbose=0)
    _fit(model, [_ForceMetric([0.9] * 4), pruning, keras.callbacks.TensorBoard(str(tmp_path))], epochs=4)
    events = EventAccumulator(str(tmp_path / "train"), size_guidance={"tensors": 0}).Reload()
    target = [float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors("epoch_pruning_target")]
    action = [float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors("epoch_pruning_action")]
    assert target == [0.5, 0.75, 0.75, 0.75] and action[:2] == [1.0, 1.0]


class _PoisonAt(keras.callbacks.Callback):
    """Sets a kernel to NaN at one batch, as an exploding gradient would."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at, self.epoch = (epoch, batch), 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            kernel = wrappers(self.model)[-1].prunable[0].variable
            kernel.assign(np.full(kernel.shape, np.nan, dtype="float32"))


def test_a_nan_loss_rolls_back_to_the_last_finite_epoch_and_stops(capsys):
    model = _model()
    at_epoch_2 = {}

    class Remember(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                at_epoch_2.update(weights=[w.numpy().copy() for w in self.model.weights])

    pruning = AdaptivePruning(initial=0.3, final=0.8, step=0.3, every=1, frequency=2, verbose=0)
    history = _fit(model, [pruning, Remember(), _PoisonAt(epoch=2, batch=1)], epochs=6)
    assert len(history.history["loss"]) == 3  # stopped in the third epoch
    assert pruning.diverged["where"] == "batch 2 of epoch 3"
    assert pruning.diverged["restored_epoch"] == 1
    for now, then in zip(model.weights, at_epoch_2["weights"]):
        np.testing.assert_array_equal(now.numpy(), then)  # weights, masks and state
    assert np.isfinite(strip(model).predict(X, verbose=0)).all()
    err = capsys.readouterr().err
    assert "training loss is nan at batch 2 of epoch 3" in err and "Lower the learning rate" in err


def test_settings_are_refused_when_made_not_after_an_epoch():
    with pytest.raises(ConfigError, match="unknown importance 'tayler'"):
        AdaptivePruning(importance="tayler")
    with pytest.raises(ConfigError, match=r"AdaptivePruning\(scope=\) must be one of global, layer"):
        AdaptivePruning(scope="globl")
    with pytest.raises(ConfigError, match=r"AdaptivePruning\(frequency=\) must be a whole number"):
        AdaptivePruning(frequency="often")
    with pytest.raises(ConfigError, match=r"FeedbackSchedule\(final=\) must be a number"):
        AdaptivePruning(final="0.8")
    batches = []

    class Count(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            batches.append(batch)

    with pytest.raises(ConfigError, match="monitors 'val_acuracy'.*logs only accuracy, loss"):
        _fit(_model(), [AdaptivePruning(monitor="val_acuracy"), Count()], epochs=1)
    assert batches == []  # refused at on_train_begin, before any training
