"""``PruningWrapper``: masks a layer's prunable weights and records their Taylor scores.

The wrapper hands the layer ``weight * mask`` under the attribute the layer reads (see
:mod:`kerasprune.sparsity.registry`), so any registry layer works unchanged, ``Bidirectional``
and ``MultiHeadAttention`` included.  The weight variables themselves are not zeroed:
a pruned weight keeps its value, so rolling a pruning step back brings it back.

While training, the gradient of the loss with respect to the masked weight passes
through the wrapper, which adds ``|w * dL/dw|`` (first-order Taylor importance, Molchanov
et al. 2019) to a per-weight sum, at the cost of one elementwise product per step (rows
only, for an embedding's sparse gradient).  The gradient reaching the variable is
masked: with plain SGD a pruned weight stays put; optimizers with momentum or decoupled
weight decay still move it a little, so a rollback restores a slightly drifted value.
Under mixed precision the scores include the loss scale, which rescales every score alike.

With ``track_gradients`` the wrapper can also capture the dense gradient ``dL/dw``
(pruned weights included) of a batch, when a controller asks for it: RigL's regrowth
criterion.  Between captures the only cost is reading a flag.

Masks, scores and a small state vector for controllers (:mod:`kerasprune.sparsity.state`) are
layer weights: they are saved with the model (``.keras``, SavedModel, h5) and restored
by ``BackupAndRestore`` and ``ModelCheckpoint``.
"""
from __future__ import annotations

import numpy as np

from ..backend import keras, tf
from ..errors import ModelError
from . import registry

STATE_SIZE = 16  # floats of controller state per wrapper: a code, then the state (see .state)


@keras.utils.register_keras_serializable(package="kerasprune")
class PruningWrapper(keras.layers.Wrapper):
    """Wrap ``layer`` so that its prunable weights are multiplied by non-trainable masks.

    ``track_scores=False`` skips the Taylor accumulation (for magnitude-only pruning);
    ``track_gradients=True`` adds the on-demand dense gradient (:meth:`capture_gradients`).
    """

    def __init__(self, layer: keras.layers.Layer, track_scores: bool = True,
                 track_gradients: bool = False, **kwargs) -> None:
        if not registry.supports(layer):
            registry.prunable_weights(layer)  # raises the specific ModelError
        if getattr(layer, "activity_regularizer", None) is not None:
            # the wrapper runs the layer's call, not its __call__, where Keras adds that loss
            raise ModelError(f"PruningWrapper: layer '{layer.name}' has an activity_regularizer, which "
                             "a pruned layer would not apply; remove it, or leave the layer out "
                             "(prune(model, layers=...)).")
        kwargs.setdefault("name", f"prune_{layer.name}")
        # the layer's own policy, not the global one: a float32 output layer of a
        # mixed_float16 model stays float32, and so do its masks and scores
        kwargs.setdefault("dtype", layer.dtype_policy)
        super().__init__(layer, **kwargs)
        self.track_scores, self.track_gradients = track_scores, track_gradients
        self.prunable: list[registry.PrunableWeight] = []

    def build(self, input_shape=None) -> None:
        if not self.layer.built:
            self.layer.build(input_shape)
        self.prunable = registry.prunable_weights(self.layer)
        self.masks, self.previous_masks, self.scores, self.score_counts = [], [], [], []
        sync = {"synchronization": tf.VariableSynchronization.ON_READ,
                "aggregation": tf.VariableAggregation.SUM}  # per-replica sums under tf.distribute
        for i, weight in enumerate(self.prunable):
            shape = weight.variable.shape
            self.masks.append(self.add_weight(f"mask{i}", shape, initializer="ones", trainable=False))
            self.previous_masks.append(
                self.add_weight(f"previous_mask{i}", shape, initializer="ones", trainable=False))
            self.scores.append(
                self.add_weight(f"taylor_sum{i}", shape, initializer="zeros", trainable=False, **sync))
            self.score_counts.append(
                self.add_weight(f"taylor_count{i}", (), initializer="zeros", trainable=False, **sync))
        self.state = self.add_weight("pruning_state", (STATE_SIZE,), initializer="zeros",
                                     trainable=False)
        self.gradients, self.capture, self.captures = [], None, None
        if self.track_gradients:
            self.gradients = [self.add_weight(f"gradient{i}", w.variable.shape, initializer="zeros",
                                              trainable=False, **sync)
                              for i, w in enumerate(self.prunable)]
            self.capture = self.add_weight("gradient_capture", (), initializer="zeros", trainable=False)
            # per replica, read as their mean: a count of batches however many replicas
            self.captures = self.add_weight("gradient_captures", (), initializer="zeros", trainable=False,
                                            synchronization=tf.VariableSynchronization.ON_READ,
                                            aggregation=tf.VariableAggregation.MEAN)
        super().build(input_shape)

    def call(self, inputs, *args, training=None, mask=None, **kwargs):
        # object.__setattr__ bypasses Keras' attribute tracking: the swap must not change
        # the layer's weight list (its order is what h5 files and set_weights rely on).
        for i, weight in enumerate(self.prunable):
            object.__setattr__(weight.owner, weight.attribute, self._masked(i))
        try:
            if self.layer._call_spec.expects_training_arg:
                kwargs["training"] = training
            if self.layer._call_spec.expects_mask_arg and mask is not None:
                kwargs["mask"] = mask  # e.g. from Embedding(mask_zero=True), for layers that take one
            return self.layer.call(inputs, *args, **kwargs)
        finally:
            for weight in self.prunable:
                object.__setattr__(weight.owner, weight.attribute, weight.variable)

    def _masked(self, i: int) -> tf.Tensor:
        weight, mask = self.prunable[i].variable, self.masks[i]
        score, count = self.scores[i], self.score_counts[i]
        track = self.track_scores
        gradient = self.gradients[i] if self.track_gradients else None

        @tf.custom_gradient
        def masked(w):
            def grad(upstream):
                if isinstance(upstream, tf.IndexedSlices):  # an embedding's looked-up rows
                    rows = upstream.indices
                    values = upstream.values
                    masked_grad = tf.IndexedSlices(values * tf.cast(tf.gather(mask, rows), values.dtype),
                                                   rows, upstream.dense_shape)
                    taylor = tf.IndexedSlices(tf.abs(tf.cast(tf.gather(w, rows), score.dtype)
                                                     * tf.cast(values, score.dtype)), rows)
                    updates = [score.scatter_add(taylor), count.assign_add(1.0)] if track else []
                else:  # under mixed precision the gradient may arrive in the compute dtype
                    masked_grad = upstream * tf.cast(mask, upstream.dtype)
                    taylor = tf.abs(tf.cast(w, score.dtype) * tf.cast(upstream, score.dtype))
                    updates = [score.assign_add(taylor), count.assign_add(1.0)] if track else []
                if gradient is not None:
                    updates.append(self._captured(i, gradient, upstream))
                if not updates:
                    return masked_grad
                with tf.control_dependencies(updates):
                    return tf.nest.map_structure(tf.identity, masked_grad, expand_composites=True)

            return w * tf.cast(mask, w.dtype), grad

        value = masked(weight)
        compute_dtype = self.prunable[i].owner.compute_dtype
        if value.dtype.is_floating and compute_dtype and value.dtype != compute_dtype:
            value = tf.cast(value, compute_dtype)  # mixed precision: the layer expects its dtype
        return value

    def _captured(self, i: int, gradient: tf.Variable, upstream) -> tf.Tensor:
        """Add ``upstream`` to ``gradient`` when a capture is asked for; else nothing.

        Signed, so that the replicas' sum is the batch's gradient (and a layer called twice
        gets both calls'); :meth:`gradient_values` takes the magnitude.
        """
        def take():
            dense = tf.convert_to_tensor(upstream)  # an embedding's rows, scattered into the table
            with tf.control_dependencies([gradient.assign_add(tf.cast(dense, gradient.dtype))]):
                return self.captures.assign_add(1.0 if i == 0 else 0.0)

        return tf.cond(self.capture > 0, take, lambda: tf.identity(self.captures))

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "track_scores": self.track_scores,
                "track_gradients": self.track_gradients}

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None) -> "PruningWrapper":
        # tf_keras' Wrapper.from_config (and every h5 or SavedModel load) deserializes the
        # inner layer the legacy way, by its bare class name, which ignores the name it was
        # registered under (register_keras_serializable): a pruned custom layer would not
        # load.  So the registered class is handed over under its bare name.
        config = dict(config)
        inner = config.pop("layer")
        registered = inner.get("registered_name")
        found = keras.utils.get_registered_object(registered) if registered else None
        if found is not None:
            custom_objects = {inner["class_name"]: found, **(custom_objects or {})}
        layer = keras.layers.deserialize(inner, custom_objects=custom_objects,
                                         use_legacy_format="module" not in inner)
        return cls(layer, **config)

    # -- what pruning algorithms read and write (outside the training graph) --

    def masked_values(self) -> list[np.ndarray]:
        """The prunable weights as the layer computes with them (zeros where masked)."""
        return [w.variable.numpy() * m.numpy() for w, m in zip(self.prunable, self.masks)]

    def effective_weights(self) -> list[tuple[tf.Variable, np.ndarray]]:
        """Every weight of the wrapped layer with the value it computes with (for metrics)."""
        masked = {id(w.variable): value for w, value in zip(self.prunable, self.masked_values())}
        return [(v, masked.get(id(v), v.numpy())) for v in self.layer.weights]

    def taylor_scores(self) -> list[np.ndarray | None]:
        """Weighted mean ``|w * dL/dw|`` per weight (None before any batch)."""
        out = []
        for score, count in zip(self.scores, self.score_counts):
            n = float(count.numpy())
            out.append(score.numpy() / n if n > 0 else None)
        return out

    def capture_gradients(self, on: bool) -> None:
        """Have the next training batches sum their dense ``dL/dw`` (see :meth:`gradient_values`);
        turning it on clears what an earlier capture left."""
        if not self.track_gradients:
            raise ModelError(f"{self.name}: this wrapper does not track gradients; prune the "
                             "model with prune(model, track_gradients=True).")
        if on:
            for gradient in self.gradients:
                gradient.assign(tf.zeros_like(gradient))
        self.capture.assign(1.0 if on else 0.0)

    def gradient_values(self) -> list[np.ndarray]:
        """``|dL/dw|`` of the batches captured since :meth:`capture_gradients` was turned on
        (summed over replicas before the magnitude), per prunable weight."""
        return [np.abs(g.numpy()) for g in self.gradients]

    def reset_scores(self) -> None:
        self.decay_scores(0.0)

    def decay_scores(self, factor: float) -> None:
        """Scale the score sums and counts: older batches weigh less, the mean stays a mean."""
        for score, count in zip(self.scores, self.score_counts):
            score.assign(score * factor)
            count.assign(count * factor)

    def set_masks(self, masks: list[np.ndarray], keep_previous: bool = True) -> None:
        """Install new masks; with ``keep_previous`` the current ones become the rollback point."""
        if keep_previous:
            self.remember_masks()
        for mask, new in zip(self.masks, masks):
            mask.assign(new.astype(mask.dtype.as_numpy_dtype))

    def remember_masks(self) -> None:
        """Make the current masks the ones :meth:`restore_previous_masks` goes back to."""
        for mask, previous in zip(self.masks, self.previous_masks):
            previous.assign(mask)

    def restore_previous_masks(self) -> None:
        for mask, previous in zip(self.masks, self.previous_masks):
            mask.assign(previous)
