"""Unstructured pruning of a whole model: wrap, set sparsity, strip.

    pruned = kerasprune.prune(model)                     # masks all ones: same outputs
    kerasprune.set_sparsity(pruned, 0.8, "taylor")       # or let AdaptivePruning do it in fit
    plain = kerasprune.strip(pruned)                     # tf_keras model, zeros baked in

Like tfmot's ``prune_low_magnitude``, the pruned model reuses the original layers (and
so shares their weights); ``strip`` returns an independent copy.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from ..backend import keras, require_graph_model
from ..checks import flag
from ..errors import ConfigError, ModelError
from ..metrics import leaf_layers
from . import registry
from .allocation import Scope, allocate
from .importance import ImportanceLike
from .wrapper import PruningWrapper

LayerSelection = Iterable[str] | Callable[[keras.layers.Layer], bool] | None


def prune(model: keras.Model, *, layers: LayerSelection = None,
          track_scores: bool = True, track_gradients: bool = False) -> keras.Model:
    """``model`` with every prunable layer (or the selected ones) in a PruningWrapper.

    ``layers`` is a list of layer names or a predicate; by default every layer with
    weights in tfmot's registry (plus Bidirectional) is wrapped.  Masks start at ones, so
    the pruned model computes exactly what ``model`` does until sparsity is set.
    ``track_scores`` and ``track_gradients`` are :class:`PruningWrapper`'s.
    """
    model = require_graph_model(model, "prune", "pruning")
    flag(track_scores, "prune(track_scores=)")
    flag(track_gradients, "prune(track_gradients=)")
    if any(isinstance(layer, PruningWrapper) for layer in model.layers):
        raise ModelError("prune: the model is already pruned; strip() it first or keep using it.")
    chosen = _selector(model, layers)
    nested = [layer.name for layer in model.layers if isinstance(layer, keras.Model)
              and any(layer.weights and registry.supports(inner) for inner in leaf_layers(layer))]
    if layers is None and nested:
        raise ModelError(
            f"prune: model '{model.name}' holds the nested model(s) {', '.join(nested)}, whose layers "
            "pruning would leave dense (the wrappers work on a model's own layers); build the model "
            "flat (call the inner layers on the outer model's tensors), or pass layers= to prune "
            "only the outer model's own layers.")
    if layers is None and not any(chosen(layer) for layer in model.layers):
        kinds = sorted({type(layer).__name__ for layer in model.layers})
        raise ModelError(
            f"prune: model '{model.name}' has no prunable layer (it has {', '.join(kinds)}); "
            "kerasprune prunes the kernels of the layers in tfmot's registry (Dense, Conv, "
            "Embedding, LSTM/GRU, MultiHeadAttention, ...), Bidirectional, and layers that "
            "implement tfmot's PrunableLayer.")

    def wrap(layer: keras.layers.Layer) -> keras.layers.Layer:
        if chosen(layer):
            return PruningWrapper(layer, track_scores=track_scores, track_gradients=track_gradients)
        return layer

    return keras.models.clone_model(model, clone_function=wrap)


def wrappers(model: keras.Model) -> list[PruningWrapper]:
    """The pruning wrappers of ``model``, in layer order."""
    return [layer for layer in model.layers if isinstance(layer, PruningWrapper)]


def set_sparsity(model: keras.Model, sparsity: float, importance: ImportanceLike = "magnitude",
                 scope: Scope = "global", min_density: float = 0.005, normalize: bool = False,
                 keep_previous: bool = True, revive: bool = False) -> float:
    """Mask the model to ``sparsity`` by ``importance``; returns the sparsity reached.

    With ``keep_previous`` the masks before the call are kept in the wrappers, so the step
    can be rolled back.  See :func:`kerasprune.sparsity.allocation.allocate` for ``scope``,
    ``min_density``, ``normalize`` and ``revive``.
    """
    found = wrappers(model)
    if not found:
        raise ModelError("set_sparsity: the model has no pruning wrappers; call kerasprune.prune(model) first.")
    masks_per_layer = allocate(found, sparsity, importance, scope, min_density, normalize, revive)
    for wrapper, masks in zip(found, masks_per_layer):
        wrapper.set_masks(masks, keep_previous)
    return model_sparsity(model)


def model_sparsity(model: keras.Model) -> float:
    """Fraction of masked entries over all wrapped prunable weights."""
    found = wrappers(model)
    total = sum(int(np.prod(m.shape)) for w in found for m in w.masks)
    zeros = sum(int(np.sum(m.numpy() == 0)) for w in found for m in w.masks)
    return zeros / total if total else 0.0


def strip(model: keras.Model, masked: bool = True) -> keras.Model:
    """A plain tf_keras copy of ``model`` without wrappers, masked weights set to zero (with
    ``masked=False``, at the values the variables keep under the masks)."""
    model = require_graph_model(model, "strip", "pruning")

    def unwrap(layer: keras.layers.Layer) -> keras.layers.Layer:
        inner = layer.layer if isinstance(layer, PruningWrapper) else layer
        return inner.__class__.from_config(inner.get_config())

    stripped = keras.models.clone_model(model, clone_function=unwrap)
    for old, new in zip(model.layers, stripped.layers):
        if isinstance(old, PruningWrapper):
            new.set_weights([value for _, value in old.effective_weights()] if masked else old.layer.get_weights())
        else:
            new.set_weights(old.get_weights())
    return stripped



def _selector(model: keras.Model, layers: LayerSelection) -> Callable[[keras.layers.Layer], bool]:
    def prunable(layer: keras.layers.Layer) -> bool:
        return registry.supports(layer) and bool(registry.prunable_weights(layer))

    if layers is None:
        return prunable
    if callable(layers):
        return lambda layer: bool(layers(layer)) and prunable(layer)
    if isinstance(layers, str):
        layers = [layers]  # one name, not its letters
    if not isinstance(layers, Iterable) or not all(isinstance(n, str) for n in layers):
        raise ConfigError(f"prune: layers= takes layer names or a predicate f(layer) -> bool, "
                          f"got {layers!r}.")
    names = set(layers)
    unknown = names - {layer.name for layer in model.layers}
    if unknown:
        raise ConfigError(f"prune: no layer(s) named {', '.join(sorted(unknown))} in model '{model.name}'.")
    for layer in model.layers:
        if layer.name in names and not registry.prunable_weights(layer):  # may raise, specifically
            raise ModelError(f"prune: layer '{layer.name}' ({type(layer).__name__}) is not prunable: "
                             "it has no prunable weights.")
    return lambda layer: layer.name in names and prunable(layer)
