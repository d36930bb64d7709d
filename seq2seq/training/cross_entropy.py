"""Label-smoothed cross-entropy with a hand-written backward, for the big output layers.

``F.cross_entropy(..., label_smoothing=e)`` computes the same number, but on a [N, V] logits
matrix its backward builds several [N, V] temporaries (a zero-filled gradient for the gold term, an
expanded one for the smoothing term, their sum, then the log-softmax backward). Here the gradient,
softmax(x) - (1 - e) onehot(t) - e / V, is written over the saved log-probabilities in place: three
passes over [N, V] instead of about eight, which is ~8 % of a CPU training step of the reference
model (BENCHMARKS.md, "speed work").
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


class _SmoothedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits: Tensor, targets: Tensor, smoothing: float) -> Tensor:
        log_probs = torch.log_softmax(logits, dim=-1)
        # Summed in fp32 at least: a bf16 sum of ~2,000 token losses (under autocast) would be
        # rounded to a multiple of 32 or so (the gradient below does not depend on it).
        total = torch.promote_types(logits.dtype, torch.float32)
        gold = log_probs.gather(1, targets.unsqueeze(1)).sum(dtype=total)
        loss = -(1.0 - smoothing) * gold
        if smoothing > 0:  # the mean over classes, summed over rows
            loss = loss - smoothing * log_probs.sum(dtype=total) / log_probs.size(-1)
        ctx.save_for_backward(log_probs, targets)
        ctx.smoothing = smoothing
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None, None]:
        log_probs, targets = ctx.saved_tensors
        smoothing, classes = ctx.smoothing, log_probs.size(-1)
        # The saved log-probabilities are this function's own buffer: reuse it for the gradient.
        grad = log_probs.exp_()
        if smoothing > 0:
            grad.sub_(smoothing / classes)
        rows = torch.arange(grad.size(0), device=grad.device)
        grad[rows, targets] -= 1.0 - smoothing
        scale = float(grad_output)
        if scale != 1.0:  # the trainer backpropagates the summed loss, so usually 1
            grad.mul_(scale)
        return grad, None, None


def smoothed_cross_entropy(logits: Tensor, targets: Tensor, smoothing: float = 0.0) -> Tensor:
    """Cross-entropy summed over rows, with label smoothing as ``F.cross_entropy`` defines it
    (the smoothing mass spread over all V classes). logits [N, V]; targets [N], no ignored rows."""
    if logits.dim() != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"expected logits [N, V] and targets [N], got {tuple(logits.shape)} "
                         f"and {tuple(targets.shape)}")
    return _SmoothedCrossEntropy.apply(logits, targets, float(smoothing))
