"""Dynamic sparse training (SET, RigL, the static control): sparse from the first step,
connections that move, a constant number of nonzeros."""
from __future__ import annotations

import numpy as np
import pytest

from kerasprune import ConfigError, ModelError, prune, strip
from kerasprune.backend import keras, tf
from kerasprune.sparsity import slots
from kerasprune.sparsity.densities import densities
from kerasprune.sparsity.dynamic import DynamicSparsity, _moved
from kerasprune.sparsity.prune import wrappers

STEPS = 16  # batches per epoch


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((STEPS * 16, 12)).astype("float32")
    y = (x[:, 0] * x[:, 1] > 0).astype("int32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)


def _model(track_gradients=True):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(48, activation="relu", name="a"),
                              keras.layers.Dense(32, activation="relu", name="b"),
                              keras.layers.Dense(2, activation="softmax", name="out")])
    pruned = prune(model, track_scores=False, track_gradients=track_gradients)
    pruned.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", ["accuracy"])
    return pruned


def _live(model):
    return [m.numpy() != 0 for w in wrappers(model) for m in w.masks]


class Watch(keras.callbacks.Callback):
    """After each batch (and after DynamicSparsity's update): what the update did."""

    def __init__(self, dst):
        super().__init__()
        self.dst, self.nonzeros, self.born = dst, [], []

    def on_train_batch_begin(self, batch, logs=None):
        self.before, self.seen = _live(self.model), len(self.dst.updates)

    def on_train_batch_end(self, batch, logs=None):
        after = _live(self.model)
        self.nonzeros.append([int(a.sum()) for a in after])
        if len(self.dst.updates) > self.seen:
            for wrapper, i in self.dst._kernels():
                k = [(w, j) for w, j in self.dst._kernels()].index((wrapper, i))
                born = after[k] & ~self.before[k]
                variable = wrapper.prunable[i].variable
                self.born.append((int(born.sum()), variable.numpy()[born],
                                  [s.numpy()[born] for s in slots.slots(self.model.optimizer, variable)]))


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_connections_move_while_every_kernel_keeps_its_number_of_nonzeros(method):
    model = _model()
    dst = DynamicSparsity(0.8, method=method, distribution="erk", drop_fraction=0.3, update_every=4,
                          verbose=0)
    watch = Watch(dst)
    model.fit(_data(), epochs=3, callbacks=[dst, watch], verbose=0)
    assert len({tuple(n) for n in watch.nonzeros}) == 1  # the same count in every kernel, every batch
    total = sum(m.size for m in _live(model))
    assert sum(watch.nonzeros[0]) == round(0.2 * total)
    # updates every 4 batches up to 75% of the 48 steps, cosine-decayed to zero
    assert [u["step"] for u in dst.updates] == [4, 8, 12, 16, 20, 24, 28, 32, 36]
    # a cosine from 0.3 to zero at step 36
    assert [u["drop_fraction"] for u in dst.updates] == pytest.approx(
        [0.15 * (1 + np.cos(np.pi * u["step"] / 36)) for u in dst.updates])
    assert sum(u["regrown"] for u in dst.updates) > 0.05 * sum(watch.nonzeros[0])


def test_regrown_weights_start_at_zero_with_their_optimizer_state_reset():
    model = _model()
    dst = DynamicSparsity(0.7, method="set", distribution="uniform", drop_fraction=0.5, update_every=4,
                          verbose=0)
    watch = Watch(dst)
    model.fit(_data(), epochs=2, callbacks=[dst, watch], verbose=0)
    regrown = [b for b in watch.born if b[0]]
    assert regrown
    for count, values, states in regrown:
        assert np.all(values == 0)
        assert len(states) == 2  # Adam's m and v
        assert all(np.all(s == 0) for s in states)


def test_rigl_captures_dense_gradients_on_update_steps_only_and_grows_where_they_are_largest():
    model = _model()
    dst = DynamicSparsity(0.8, method="rigl", update_every=5, verbose=0)
    model.fit(_data(), epochs=2, callbacks=[dst], verbose=0)
    assert len(dst.updates) == 4  # steps 5, 10, 15, 20 of 32; 24 is past end_step
    for wrapper in wrappers(model):
        assert float(wrapper.captures.numpy()) == len(dst.updates)
        assert float(wrapper.capture.numpy()) == 0.0  # off between updates
        assert any(np.any(g > 0) for g in wrapper.gradient_values())

    mask = np.array([1, 1, 1, 0, 0, 0], bool)
    values = np.array([0.5, -0.1, 0.9, 0.0, 0.0, 0.0])
    grads = np.array([0.0, 0.0, 0.0, 0.2, 0.7, 0.1])
    moved = _moved(mask, values, grads, 1, np.random.default_rng(0))
    assert moved.tolist() == [True, False, True, False, True, False]  # -0.1 out, the 0.7 gradient in


def _embedding_model():
    """Tokens 0-9 are frequent (in every sentence), 10-59 rare; the label is token 10-34's."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.integers(0, 10, (256, 6)), rng.integers(10, 60, (256, 2))], axis=1)
    y = (x[:, 6] < 35).astype("int32")
    model = keras.Sequential([keras.Input((8,), dtype="int32"), keras.layers.Embedding(60, 16, name="emb"),
                              keras.layers.GlobalAveragePooling1D(),
                              keras.layers.Dense(2, activation="softmax", name="out")])
    pruned = prune(model, track_scores=False, track_gradients=True)
    pruned.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", ["accuracy"])
    return pruned, tf.data.Dataset.from_tensor_slices((x.astype("int32"), y)).batch(16)


def _rows(model):
    return next(m.numpy() != 0 for w in wrappers(model) if w.layer.name == "emb" for m in w.masks).sum(axis=1)


@pytest.mark.parametrize("per_row", [False, True])
def test_with_per_row_each_embedding_row_keeps_its_nonzeros_where_rigl_moves_them_to_frequent_tokens(per_row):
    model, data = _embedding_model()
    dst = DynamicSparsity(0.75, method="rigl", distribution="uniform", drop_fraction=0.5, update_every=4,
                          per_row=per_row, verbose=0)

    class First(keras.callbacks.Callback):  # the masks of the first step, before any update
        rows = None

        def on_train_batch_end(self, batch, logs=None):
            if self.rows is None:
                self.rows = _rows(self.model)

    first = First()
    model.fit(data, epochs=2, callbacks=[dst, first], verbose=0)
    rows = _rows(model)
    assert rows.sum() == first.rows.sum() and dst.updates
    if per_row:
        assert rows.tolist() == first.rows.tolist()
    else:  # the gradient of every batch reaches the frequent tokens' rows
        assert rows[:10].sum() > first.rows[:10].sum()


def test_rigl_refuses_wrappers_that_do_not_capture_gradients():
    model = _model(track_gradients=False)
    with pytest.raises(ModelError, match="track_gradients=True"):
        model.fit(_data(), epochs=1, callbacks=[DynamicSparsity(0.8, method="rigl", verbose=0)], verbose=0)


def test_static_masks_never_move():
    model = _model(track_gradients=False)
    dst = DynamicSparsity(0.9, method="static", verbose=0)
    model.fit(_data(), epochs=1, callbacks=[dst], verbose=0)
    first = _live(model)
    # a second fit continues the run: its callback (another seed) reads the masks' state
    # from the weights instead of drawing masks of its own
    again = DynamicSparsity(0.9, method="static", verbose=0, seed=7)
    model.fit(_data(), epochs=1, callbacks=[again], verbose=0)
    assert not dst.updates and all(np.array_equal(a, b) for a, b in zip(first, _live(model)))
    assert int(again.state.step) == 2 * STEPS


def _dense_gradients(model, x, y):
    """dL/dw at the weights the layers compute with (pruned ones at zero)."""
    plain = strip(model)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, plain(x, training=True)))
    return [g.numpy() for g in tape.gradient(loss, [l.kernel for l in plain.layers if hasattr(l, "kernel")])]


@pytest.mark.parametrize("batches", [1, 3])
def test_the_captured_gradient_is_the_summed_dense_gradient_of_the_captured_batches(batches):
    model = _model()
    for wrapper in wrappers(model):
        wrapper.set_masks([(np.random.default_rng(1).random(m.shape) < 0.2).astype("float32")
                           for m in wrapper.masks])
    for wrapper in wrappers(model):
        wrapper.capture_gradients(True)
    expected = 0
    for x, y in _data().take(batches):  # each batch's gradient at the weights it trains
        expected = expected + np.array(_dense_gradients(model, x, y), dtype=object)
        model.train_on_batch(x, y)
    captured = [g for w in wrappers(model) for g in w.gradient_values()]
    for got, want in zip(captured, expected):
        np.testing.assert_allclose(got, np.abs(want), rtol=1e-4, atol=1e-6)
        assert np.any(got > 0)


def test_rigl_sums_the_gradients_of_the_batches_leading_up_to_each_update():
    class Captures(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.counts = []

        def on_train_batch_end(self, batch, logs=None):
            self.counts.append(int(wrappers(self.model)[0].captures.numpy()))

    model, captures = _model(), Captures()
    dst = DynamicSparsity(0.8, method="rigl", update_every=5, gradient_batches=3, verbose=0)
    model.fit(_data(), epochs=2, callbacks=[dst, captures], verbose=0)
    assert [u["step"] for u in dst.updates] == [5, 10, 15, 20]
    # batches 3-5, 8-10, 13-15 and 18-20 captured, none after the last update (end step 24)
    captured = [s + 1 for s in range(2 * STEPS) if captures.counts[s] > (captures.counts[s - 1] if s else 0)]
    assert captured == [3, 4, 5, 8, 9, 10, 13, 14, 15, 18, 19, 20]


def test_erk_keeps_small_layers_denser_within_the_floor_and_the_cap():
    shapes = [(5, 5, 1, 6), (400, 120), (120, 84), (84, 10)]
    total = sum(np.prod(s) for s in shapes)
    for sparsity in (0.5, 0.9, 0.98):
        counts = densities(shapes, sparsity, "erk", min_density=0.01, max_density=0.8)
        dens = [c / np.prod(s) for c, s in zip(counts, shapes)]
        assert sum(counts) == round((1 - sparsity) * total)
        assert all(0.01 - 1e-9 <= d <= 0.8 + 1e-9 for d in dens), dens
        assert dens[1] == min(dens) and dens[0] > dens[1]
    uniform = densities(shapes, 0.9, "uniform")
    assert all(abs(c / np.prod(s) - 0.1) < 0.01 for c, s in zip(uniform, shapes))
    assert densities(shapes, 0.5, "erk", max_density=0.8)[0] == int(0.8 * 150)  # the cap binds
    assert densities(shapes, 0.98, "erk", min_density=0.017)[1] == 816  # the floor binds (0.017 * 48000)
    with pytest.raises(ConfigError, match="cannot be met"):
        densities(shapes, 0.98, "erk", min_density=0.05)


class Initial(keras.callbacks.Callback):
    """The kernels as the first batch sees them (after DynamicSparsity drew its masks)."""

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0 and not hasattr(self, "kernels"):
            self.kernels = [w.prunable[i].variable.numpy() for w in wrappers(self.model)
                            for i in range(len(w.masks))]


def test_sparse_init_gives_each_sparse_kernel_the_signal_of_its_dense_init():
    def run(sparse_init):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((6,)), keras.layers.Embedding(50, 8, name="emb"),
                                  keras.layers.Flatten(), keras.layers.Dense(64, activation="relu", name="a"),
                                  keras.layers.Dense(2, activation="softmax", name="out")])
        drawn = [w.numpy() for w in (model.get_layer("emb").embeddings, model.get_layer("a").kernel)]
        pruned = prune(model, track_scores=False)
        pruned.compile("adam", "sparse_categorical_crossentropy")
        x = np.random.default_rng(0).integers(0, 50, (64, 6))
        dst, seen = DynamicSparsity(0.9, method="static", sparse_init=sparse_init, verbose=0), Initial()
        pruned.fit(x, x[:, 0] % 2, batch_size=16, epochs=1, callbacks=[dst, seen], verbose=0)
        return drawn, seen.kernels, _live(pruned)

    drawn, plain, masks = run(False)
    _, scaled, same_masks = run(True)
    assert all(np.array_equal(a, b) for a, b in zip(masks, same_masks))  # the init does not move masks
    np.testing.assert_array_equal(scaled[0], drawn[0])  # an embedding looks rows up: left as drawn
    density = masks[1].mean()
    assert density < 0.5
    np.testing.assert_allclose(scaled[1], plain[1] / np.sqrt(density), rtol=1e-5)
    # the layer's pre-activations start about as large as the dense init's
    inputs = np.random.default_rng(1).standard_normal((512, 48)).astype("float32")
    dense_std = (inputs @ drawn[1]).std()
    assert abs((inputs @ (scaled[1] * masks[1])).std() / dense_std - 1) < 0.15
    assert (inputs @ (plain[1] * masks[1])).std() / dense_std < 0.5
    with pytest.raises(ConfigError, match="sparse_init"):
        DynamicSparsity(0.9, sparse_init="yes")


def test_bad_settings_are_refused_when_the_callback_is_made():
    with pytest.raises(ConfigError, match="method"):
        DynamicSparsity(0.8, method="snip")
    with pytest.raises(ConfigError, match="must not exceed"):
        DynamicSparsity(0.8, min_density=0.5, max_density=0.2)
    with pytest.raises(ConfigError, match="sparsity"):
        DynamicSparsity(1.0)
    with pytest.raises(ConfigError, match="at most update_every"):
        DynamicSparsity(0.8, update_every=10, gradient_batches=11)
    with pytest.raises(ConfigError, match="method 'set' uses none"):
        DynamicSparsity(0.8, method="set", gradient_batches=4)
    with pytest.raises(ConfigError, match="'static' never updates"):
        DynamicSparsity(0.8, method="static", per_row=True)


class Epochs(keras.callbacks.Callback):
    """Records the epochs run; with ``kill`` raises in the middle of epoch 2."""

    def __init__(self, kill=False):
        super().__init__()
        self.kill, self.begun = kill, []

    def on_epoch_begin(self, epoch, logs=None):
        self.begun.append(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        if self.kill and self.begun[-1] == 1 and batch == 6:
            raise KeyboardInterrupt


def test_a_killed_run_resumes_on_the_masks_an_unbroken_run_reaches(tmp_path):
    def run(backup, kill=False):
        model, epochs = _model(), Epochs(kill)
        dst = DynamicSparsity(0.8, method="set", update_every=3, verbose=0, seed=4)
        model.fit(_data(), epochs=3, verbose=0,
                  callbacks=[dst, keras.callbacks.BackupAndRestore(str(backup)), epochs])
        return _live(model), epochs.begun

    unbroken, _ = run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", kill=True)
    resumed, begun = run(tmp_path / "b")
    assert begun == [1, 2]  # from the checkpoint of epoch 1, with the masks it had moved to
    assert all(np.array_equal(a, b) for a, b in zip(unbroken, resumed))
