"""Distillation: the dense model's softened outputs ride with the labels, and the student learns them."""
from __future__ import annotations

import numpy as np
import pytest

from kerasprune.backend import keras, tf
from kerasprune.distillation import DistillationLoss, LabelAccuracy, with_teacher
from kerasprune.errors import ConfigError


def _mlp(seed: int, classes: int = 3) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(hidden))


def _data(n: int = 64, seed: int = 0) -> tf.data.Dataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, rng.integers(0, 3, n))).batch(16)


def test_batches_carry_the_label_then_the_teachers_probabilities():
    teacher = _mlp(1)
    (x, y), = _data(16).take(1)
    (_, packed), = with_teacher(_data(16), teacher).take(1)
    assert packed.shape == (16, 4)
    np.testing.assert_array_equal(packed[:, 0], y.numpy().astype("float32"))
    np.testing.assert_allclose(packed[:, 1:], teacher(x), rtol=1e-6)


def test_the_loss_is_cross_entropy_on_labels_alone_and_adds_the_teachers_term_when_packed():
    probs = tf.constant([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    labels = tf.constant([[0.0], [2.0]])
    ce = keras.losses.SparseCategoricalCrossentropy()(labels, probs)
    loss = DistillationLoss(alpha=0.5, temperature=2.0)
    np.testing.assert_allclose(loss(labels, probs), ce, rtol=1e-6)  # validation batches
    # a teacher that agrees with the student adds nothing but weighs the labels by 1 - alpha
    np.testing.assert_allclose(loss(tf.concat([labels, probs], 1), probs), 0.5 * ce, rtol=1e-5)
    other = tf.constant([[0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    assert float(loss(tf.concat([labels, other], 1), probs)) > 0.5 * float(ce) + 0.05
    assert DistillationLoss.from_config(loss.get_config()).temperature == 2.0


def test_accuracy_reads_the_labels_whether_or_not_the_teacher_follows_them():
    probs = tf.constant([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    plain, packed = LabelAccuracy(), LabelAccuracy()
    plain.update_state(tf.constant([0, 1]), probs)
    packed.update_state(tf.constant([[0.0, 0.1, 0.1, 0.8], [1.0, 0.1, 0.1, 0.8]]), probs)
    assert plain.result() == packed.result() == 0.5 and plain.name == "accuracy"


def test_a_student_trained_on_the_teacher_alone_learns_to_answer_like_it():
    teacher, student = _mlp(1), _mlp(2)
    x = np.concatenate([x for x, _ in _data(256, seed=3)])
    agree = lambda: np.mean(np.argmax(student(x), 1) == np.argmax(teacher(x), 1))  # noqa: E731
    before = agree()
    # alpha 1: the labels (random here) carry no weight, only the teacher's answers
    student.compile(keras.optimizers.Adam(0.01), DistillationLoss(alpha=1.0, temperature=2.0),
                    metrics=[LabelAccuracy()])
    history = student.fit(with_teacher(_data(256, seed=3), teacher), epochs=30, verbose=0)
    assert agree() >= max(0.9, before + 0.2)
    assert history.history["loss"][-1] < 0.2 * history.history["loss"][0]
    assert "accuracy" in history.history


def test_mistakes_are_named():
    with pytest.raises(ConfigError, match="alpha=\\) must be a number in \\[0, 1\\]"):
        DistillationLoss(alpha=1.5)
    with pytest.raises(ConfigError, match="temperature=\\) must be a number > 0"):
        DistillationLoss(temperature=0)
    with pytest.raises(ConfigError, match="pass a tf.data.Dataset"):
        with_teacher([1, 2], _mlp(1))
    onehot = tf.data.Dataset.from_tensor_slices((np.zeros((4, 4), "float32"), np.eye(4)[:, :3])).batch(2)
    with pytest.raises(ConfigError, match="labels must be class ids"):
        with_teacher(onehot, _mlp(1))
    weighted = _data().map(lambda x, y: (x, y, tf.ones_like(y, tf.float32)))
    with pytest.raises(ConfigError, match="must be \\(inputs, labels\\) pairs, got 3 part.*drop sample weights"):
        with_teacher(weighted, _mlp(1))
    with pytest.raises(ConfigError, match="yields single examples; batch it first"):
        with_teacher(_data().unbatch(), _mlp(1))


def test_a_teacher_that_outputs_logits_is_refused_before_it_makes_the_student_nan():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((4,))
    logits = keras.Model(inputs, keras.layers.Dense(3)(inputs), name="logits_teacher")
    with pytest.raises(ConfigError, match="teacher 'logits_teacher' must output class probabilities, "
                                          "but on a check batch .*end it with a softmax"):
        with_teacher(_data(), logits)
    with_teacher(_data(), keras.Model(inputs, keras.layers.Softmax()(logits.output)))  # the fix


def test_a_teacher_that_reads_text_is_packed_unchecked():
    text = tf.data.Dataset.from_tensor_slices((["a b", "b c", "c a", "a a"], [0, 1, 2, 0])).batch(2)
    vectorize = keras.layers.TextVectorization(max_tokens=8, output_sequence_length=3)
    vectorize.adapt(["a b c"])
    inputs = keras.Input((1,), dtype=tf.string)
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(8, 4)(vectorize(inputs)))
    teacher = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    packed = with_teacher(text.map(lambda x, y: (tf.reshape(x, [-1, 1]), y)), teacher)
    assert next(iter(packed))[1].shape == (2, 4)  # the label and the teacher's three probabilities


def test_checking_the_teacher_leaves_a_reshuffled_datasets_epochs_alone():
    def shuffled() -> tf.data.Dataset:
        return _data().unbatch().shuffle(64, seed=1, reshuffle_each_iteration=True).batch(16)

    first_epoch = np.concatenate([x for x, _ in shuffled()])
    packed = with_teacher(shuffled(), _mlp(1))
    np.testing.assert_array_equal(np.concatenate([x for x, _ in packed]), first_epoch)
