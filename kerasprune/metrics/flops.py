"""Training FLOPs, counted the way the RigL paper does (Evci et al. 2020, appendix H).

A training step costs, per example, the forward pass (two FLOPs a MAC) and a backward pass
of twice that (the gradients of the activations and of the weights), both at the MACs of
the weights alive at the time: what a sparse kernel would do.  Dense-to-sparse methods
(GMP, adaptive) pass through their sparsities; the MACs of a density between the model's
final one and dense are interpolated linearly between its effective and its dense MACs,
the sparsity taken at the middle of each epoch (the mean of its start and end).  RigL's
update batches add the dense weight gradient in place of the sparse one.
"""
from __future__ import annotations

from typing import Sequence


def training_flops(macs: int, macs_effective: int, examples: int, epoch_sparsity: Sequence[float],
                   start_sparsity: float = 0.0, dense_gradient_examples: int = 0) -> int:
    """FLOPs of ``len(epoch_sparsity)`` epochs of ``examples`` (the sparsity at each epoch's end).

    ``macs``/``macs_effective`` are the final model's, dense and counting nonzero weights;
    ``start_sparsity`` is the model's before the first step (a sparse-from-initialization
    run starts at its final sparsity).
    """
    if not epoch_sparsity:
        return 0
    final_density = 1.0 - epoch_sparsity[-1]

    def forward(sparsity: float) -> float:
        if final_density >= 1.0:
            return float(macs_effective)
        share = max(0.0, (1.0 - sparsity) - final_density) / (1.0 - final_density)
        return macs_effective + (macs - macs_effective) * min(1.0, share)

    total, before = 0.0, start_sparsity
    for after in epoch_sparsity:
        total += 3 * 2 * examples * (forward(before) + forward(after)) / 2
        before = after
    return int(total + 2 * (macs - macs_effective) * dense_gradient_examples)


def teacher_flops(teacher_macs: int, examples: int, epochs: int) -> int:
    """What distillation adds: the teacher's forward pass over every example of every epoch."""
    return int(2 * teacher_macs * examples * epochs)


__all__ = ["teacher_flops", "training_flops"]
