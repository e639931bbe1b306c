"""Fine-tuning against the dense model's outputs: knowledge distillation (Hinton et al. 2015).

A model that lost channels or weights and fine-tunes on hard labels alone can overfit within
an epoch or two on a small dataset (SST-2's structured 30% peaked at fine-tuning epoch 1 or
2); the dense model's softened probabilities also say how alike the classes look for each
example, a richer target that regularises the smaller model.

The teacher's outputs travel with the labels: :func:`with_teacher` maps each batch ``(x, y)``
to ``(x, [y, p_teacher(x)])`` packed in one tensor, and :class:`DistillationLoss` and
:class:`LabelAccuracy` unpack it.  So the student stays the model being fit: every callback
(the pruning wrappers, tfmot's ``UpdatePruningStep``, ``KeepBest``, ``BackupAndRestore``)
sees it as it would without distillation, and validation batches of plain labels are scored
on the labels alone (the loss is then cross-entropy)::

    student.compile(optimizer, loss=DistillationLoss(alpha=0.5, temperature=4.0),
                    metrics=[LabelAccuracy()])
    student.fit(with_teacher(train, teacher), validation_data=val, epochs=4)
"""
from __future__ import annotations

from .backend import keras, tf
from .checks import number
from .errors import ConfigError
from .data import example_batch

_EPSILON = 1e-7
#: how far from 1 a teacher's row of probabilities may sum (float16 rounding included)
_SUM_TOLERANCE = 1e-2


def with_teacher(dataset: tf.data.Dataset, teacher: keras.Model) -> tf.data.Dataset:
    """``dataset``'s batches of ``(inputs, class ids)`` with ``teacher``'s probabilities packed
    after each label, as :class:`DistillationLoss` reads them."""
    if not isinstance(dataset, tf.data.Dataset):
        raise ConfigError(f"with_teacher: pass a tf.data.Dataset of (inputs, labels) batches, got "
                          f"{type(dataset).__name__}.")
    outputs = teacher.outputs[0].shape if teacher.outputs else None
    if outputs is None or outputs.rank != 2 or len(teacher.outputs) != 1:
        raise ConfigError(f"with_teacher: teacher '{teacher.name}' must have one output of class "
                          f"probabilities per example (batch, classes), got {outputs}.")
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise ConfigError(f"with_teacher: the dataset's elements must be (inputs, labels) pairs, got "
                          f"{len(spec) if isinstance(spec, tuple) else 1} part(s); drop sample "
                          "weights (dataset.map(lambda x, y, w: (x, y))), which distillation does not take.")
    if spec[1].shape.rank == 0:
        raise ConfigError("with_teacher: the dataset yields single examples; batch it first "
                          "(dataset.batch(n)), so the teacher sees batches as it was trained on.")
    if tuple(dataset.element_spec[1].shape)[1:] not in ((), (1,)):
        raise ConfigError(f"with_teacher: the labels must be class ids of shape (batch,) or "
                          f"(batch, 1), got {dataset.element_spec[1].shape}.")

    _check_probabilities(teacher)

    def pack(x, y):
        labels = tf.cast(tf.reshape(y, [-1, 1]), tf.float32)
        return x, tf.concat([labels, tf.cast(teacher(x, training=False), tf.float32)], axis=1)

    return dataset.map(pack, num_parallel_calls=tf.data.AUTOTUNE)


def _check_probabilities(teacher: keras.Model) -> None:
    """A ConfigError unless ``teacher`` outputs probabilities (no negative entry, each row
    summing to 1): logits pass the shape check, and the loss's log turns them NaN.  It runs on
    a made-up batch, not the dataset's first: another iterator of a dataset shuffled each
    epoch would move the order of every epoch after it.  A teacher that reads text (string
    inputs) gets no made-up batch, and is not checked."""
    if any(tf.as_dtype(spec.dtype) == tf.string for spec in teacher.inputs):
        return
    outputs = tf.cast(teacher(example_batch(teacher), training=False), tf.float32)
    lowest = float(tf.reduce_min(outputs))
    sums = tf.reduce_sum(outputs, axis=-1)
    if lowest < 0 or float(tf.reduce_max(tf.abs(sums - 1.0))) > _SUM_TOLERANCE:
        raise ConfigError(
            f"with_teacher: teacher '{teacher.name}' must output class probabilities, but on a "
            f"check batch its outputs reach {lowest:.3g} and its rows sum to "
            f"{float(tf.reduce_min(sums)):.3g}..{float(tf.reduce_max(sums)):.3g} (logits?); end it "
            "with a softmax: keras.Model(teacher.input, keras.layers.Softmax()(teacher.output)).")


def _split(y_true, y_pred):
    """(class ids, teacher probabilities or None): packed targets have 1 + classes columns."""
    if y_true.shape.rank == 2 and y_true.shape[-1] == 1 + y_pred.shape[-1]:
        return y_true[:, 0], y_true[:, 1:]
    return y_true, None


@keras.utils.register_keras_serializable("kerasprune")
class DistillationLoss(keras.losses.Loss):
    """``(1 - alpha)`` cross-entropy on the labels plus ``alpha`` T² KL(teacher_T || student_T),
    both distributions softened by ``temperature`` (the T² keeps the soft term's gradient on
    the scale of the hard one).  Outputs are probabilities (a softmax), as the zoo's models
    give; targets without teacher columns get the cross-entropy alone."""

    def __init__(self, alpha: float = 0.5, temperature: float = 4.0, name: str = "distillation",
                 **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.alpha = number(alpha, "DistillationLoss(alpha=)", low=0.0, high=1.0)
        self.temperature = number(temperature, "DistillationLoss(temperature=)", low=0.0, low_open=True)

    def call(self, y_true, y_pred):
        labels, teacher = _split(y_true, y_pred)
        hard = keras.losses.sparse_categorical_crossentropy(labels, y_pred)
        if teacher is None:
            return hard
        t = self.temperature
        soft_teacher = tf.nn.softmax(tf.math.log(teacher + _EPSILON) / t)
        log_student = tf.nn.log_softmax(tf.math.log(y_pred + _EPSILON) / t)
        kl = tf.reduce_sum(soft_teacher * (tf.math.log(soft_teacher + _EPSILON) - log_student), -1)
        return (1.0 - self.alpha) * hard + self.alpha * t * t * kl

    def get_config(self) -> dict:
        return {**super().get_config(), "alpha": self.alpha, "temperature": self.temperature}


@keras.utils.register_keras_serializable("kerasprune")
class LabelAccuracy(keras.metrics.SparseCategoricalAccuracy):
    """Accuracy on the class ids, whether or not the teacher's columns follow them; named
    ``accuracy``, so ``val_accuracy`` monitors and reports read as without distillation."""

    def __init__(self, name: str = "accuracy", **kwargs) -> None:
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(_split(y_true, y_pred)[0], y_pred, sample_weight)


__all__ = ["DistillationLoss", "LabelAccuracy", "with_teacher"]
