"""Which weights of a layer can be pruned, and which attribute the layer reads each from.

The layer types and their weights are tfmot's (``PruneRegistry``, ``PrunableLayer``),
so kerasprune prunes exactly what tfmot prunes; this module adds ``Bidirectional``
(which tfmot cannot wrap) and the attribute lookup the masking wrapper needs: it masks
a weight by handing the layer ``weight * mask`` under the attribute it reads.
"""
from __future__ import annotations

from dataclasses import dataclass

from tensorflow_model_optimization.python.core.sparsity.keras.prunable_layer import PrunableLayer
from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry

from ..backend import keras, tf
from ..errors import ModelError


@dataclass(frozen=True)
class PrunableWeight:
    """A prunable variable and the (sub)layer attribute through which it is read."""

    variable: tf.Variable
    owner: keras.layers.Layer
    attribute: str

    @property
    def name(self) -> str:
        return self.variable.name.split(":")[0]


def supports(layer: keras.layers.Layer) -> bool:
    """Whether kerasprune can wrap ``layer`` (it may still have no prunable weights)."""
    if isinstance(layer, keras.layers.Bidirectional):
        return supports(layer.forward_layer) and supports(layer.backward_layer)
    return isinstance(layer, PrunableLayer) or PruneRegistry.supports(layer)


def prunable_weights(layer: keras.layers.Layer) -> list[PrunableWeight]:
    """The prunable weights of a built layer, each with the attribute that holds it."""
    if not layer.built:
        raise ModelError(f"layer '{layer.name}' is not built; build the model before pruning it.")
    if isinstance(layer, keras.layers.Bidirectional):
        return prunable_weights(layer.forward_layer) + prunable_weights(layer.backward_layer)
    if isinstance(layer, PrunableLayer):
        variables = layer.get_prunable_weights()
    elif PruneRegistry.supports(layer):
        variables = PruneRegistry.make_prunable(layer).get_prunable_weights()
    else:
        raise ModelError(
            f"layer '{layer.name}' ({type(layer).__name__}) is not prunable: it is not in "
            "tfmot's registry and does not implement tfmot's PrunableLayer. Implement "
            "PrunableLayer.get_prunable_weights() on it, or leave it out of `layers=`."
        )
    return [_locate(layer, v) for v in variables]


def _locate(layer: keras.layers.Layer, variable: tf.Variable) -> PrunableWeight:
    for sublayer in layer._flatten_layers(include_self=True):
        for attribute, value in vars(sublayer).items():
            if value is variable:
                return PrunableWeight(variable, sublayer, attribute)
    raise ModelError(
        f"layer '{layer.name}': its prunable weight '{variable.name}' is not held in an "
        "attribute of the layer or its sublayers, so it cannot be masked. Keep the "
        "variable in an attribute (e.g. self.kernel = self.add_weight(...)) and read it "
        "from there in call()."
    )
