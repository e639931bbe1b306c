"""What compression is judged by: accuracy, F1, parameters, sparsity, MACs.

Counting conventions (the same for every method, so figures compare):

* **Prunable weights** are the weights of rank >= 2 (kernels, embeddings, attention
  projections); biases and normalization vectors are not.  *Sparsity* is the fraction of
  zeros among them, per layer and globally.  This is a property of the model, not of a
  method: it includes rank-2 weights a method leaves alone (tfmot and kerasprune do not
  prune depthwise kernels or position embeddings), so it can read below a method's target.
* **Params** count every weight of the model once, without pruning bookkeeping (masks,
  thresholds, step counters of tfmot or kerasprune wrappers); *nonzero params* count
  the nonzero entries of the same weights.
* **MACs** are multiply-accumulates per example (batch 1) of the layers that multiply by
  weights, plus attention's two matrix products.  Elementwise work (BatchNorm, activations,
  pooling, adds) is not counted, as is customary.  *Effective* MACs count only the
  nonzero weights: what a sparse kernel would have to do.
* **Training FLOPs** (:mod:`.flops`) count a run's training as the RigL paper does.

Bytes on disk and memory are the benchmark's (:mod:`kerasprune.benchmark.footprint`).
"""
from .counts import (
    count_nonzero_params,
    count_params,
    effective_values,
    global_sparsity,
    layer_sparsity,
    leaf_layers,
    measured_weights,
    unwrap,
)
from .flops import teacher_flops, training_flops
from .macs import Macs, count_macs, register_macs
from .quality import classification_scores, evaluate, loss_of


def figures(model) -> dict:
    """The size figures every results file gives a model (experiments, studies, benchmarks
    alike): sparsity, params, nonzero params, MACs dense and effective."""
    macs = count_macs(model)
    return {"sparsity": round(global_sparsity(model), 5), "params": count_params(model),
            "nonzero_params": count_nonzero_params(model), "macs": macs.dense,
            "macs_effective": macs.effective}


__all__ = [
    "Macs", "classification_scores", "count_macs", "count_nonzero_params", "count_params",
    "effective_values", "evaluate", "figures", "global_sparsity", "layer_sparsity", "leaf_layers",
    "loss_of", "measured_weights", "register_macs", "teacher_flops", "training_flops", "unwrap",
]
