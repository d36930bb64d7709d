"""Label-smoothed cross-entropy with a hand-written backward, for the big output layers.

``F.cross_entropy(..., label_smoothing=e)`` computes the same number, but on a [N, V] logits
matrix its backward builds several [N, V] temporaries (a zero-filled gradient for the gold term, an
expanded one for the smoothing term, their sum, then the log-softmax backward). Here the gradient,
softmax(x) - (1 - e) onehot(t) - e / V, is written over the saved log-probabilities in place: three
passes over [N, V] instead of about eight, which is ~8 % of a CPU training step of the reference
model (BENCHMARKS.md, "speed work").

``linear_cross_entropy`` goes one step further for the decoder's output layer: it takes the
readouts and the output weight, and computes the logits, the loss and both gradients
``chunk_rows`` rows at a time, so no [N, V] matrix is ever built or saved (as Liger Kernel's fused
linear cross-entropy and Wijmans et al., 2024, "Cut your losses", do on GPUs). Each chunk's
softmax passes then read a block that stays in the CPU's cache.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable


def _summed_loss(log_probs: Tensor, targets: Tensor, smoothing: float) -> Tensor:
    """-(1 - e) log p(target) - e mean_v log p(v), summed over the rows of log_probs [N, V]."""
    # Summed in fp32 at least: a bf16 sum of ~2,000 token losses (under autocast) would be
    # rounded to a multiple of 32 or so (the gradient does not depend on it).
    total = torch.promote_types(log_probs.dtype, torch.float32)
    loss = -(1.0 - smoothing) * log_probs.gather(1, targets.unsqueeze(1)).sum(dtype=total)
    if smoothing > 0:  # the mean over classes, summed over rows
        loss = loss - smoothing * log_probs.sum(dtype=total) / log_probs.size(-1)
    return loss


def _gradient_in_place(log_probs: Tensor, targets: Tensor, smoothing: float) -> Tensor:
    """The loss's gradient with respect to the logits, softmax - (1 - e) onehot - e / V, written
    over ``log_probs`` (a buffer of the caller's own)."""
    grad = log_probs.exp_()
    if smoothing > 0:
        grad.sub_(smoothing / log_probs.size(-1))
    grad[torch.arange(grad.size(0), device=grad.device), targets] -= 1.0 - smoothing
    return grad


class _SmoothedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits: Tensor, targets: Tensor, smoothing: float) -> Tensor:
        log_probs = torch.log_softmax(logits, dim=-1)
        ctx.save_for_backward(log_probs, targets)
        ctx.smoothing = smoothing
        return _summed_loss(log_probs, targets, smoothing)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None, None]:
        log_probs, targets = ctx.saved_tensors
        # The saved log-probabilities are this function's own buffer: reuse it for the gradient.
        grad = _gradient_in_place(log_probs, targets, ctx.smoothing)
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


# Rows of the output layer done together: 512 x ~6,000 fp32 logits (12 MB) was fastest on the
# 2-core Xeon in a probe of the layer and loss alone (1.42x the separate ones; 256: 1.34x,
# 1024: 1.22x, 2048: 1.12x; a whole training step gains less, BENCHMARKS.md).
CHUNK_ROWS = 512


def _chunked_loss(hidden: Tensor, weight: Tensor, targets: Tensor, smoothing: float,
                  chunk_rows: int, dtype: torch.dtype, with_grads: bool
                  ) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """The summed loss of F.linear(hidden, weight) and, with ``with_grads``, its gradients with
    respect to hidden and weight; the products run in ``dtype`` (bf16 under autocast)."""
    hidden_c, weight_c = hidden.to(dtype), weight.to(dtype)
    total = torch.promote_types(dtype, torch.float32)
    loss = torch.zeros((), dtype=total, device=hidden.device)
    grad_hidden = torch.empty_like(hidden_c) if with_grads else None
    # Accumulated over the chunks in fp32 at least, like ``total``.
    grad_weight = torch.zeros(weight.shape, dtype=total, device=weight.device) if with_grads else None
    for start in range(0, hidden.size(0), chunk_rows):
        rows, gold = hidden_c[start:start + chunk_rows], targets[start:start + chunk_rows]
        log_probs = torch.log_softmax(F.linear(rows, weight_c), dim=-1)
        loss += _summed_loss(log_probs, gold, smoothing)
        if grad_hidden is None or grad_weight is None:
            continue
        grad = _gradient_in_place(log_probs, gold, smoothing)
        torch.mm(grad, weight_c, out=grad_hidden[start:start + chunk_rows])
        if grad.dtype == total:
            grad_weight.addmm_(grad.t(), rows)
        else:
            grad_weight += torch.mm(grad.t(), rows)
    if grad_hidden is None or grad_weight is None:
        return loss, None, None
    return loss, grad_hidden.to(hidden.dtype), grad_weight.to(weight.dtype)


class _LinearSmoothedCrossEntropy(torch.autograd.Function):
    # The gradients are computed in the forward pass, chunk by chunk, while each chunk's
    # probabilities are at hand; backward only scales them.
    @staticmethod
    def forward(ctx: Any, hidden: Tensor, weight: Tensor, targets: Tensor, smoothing: float,
                chunk_rows: int, dtype: torch.dtype) -> Tensor:
        with torch.autocast(hidden.device.type, enabled=False):
            loss, grad_hidden, grad_weight = _chunked_loss(hidden, weight, targets, smoothing,
                                                           chunk_rows, dtype, with_grads=True)
        ctx.save_for_backward(grad_hidden, grad_weight)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Optional[Tensor], ...]:
        grad_hidden, grad_weight = ctx.saved_tensors
        scale = float(grad_output)
        if scale != 1.0:  # the trainer backpropagates the summed loss, so usually 1
            grad_hidden, grad_weight = grad_hidden * scale, grad_weight * scale
        return grad_hidden, grad_weight, None, None, None, None


def linear_cross_entropy(hidden: Tensor, weight: Tensor, targets: Tensor, smoothing: float = 0.0,
                         chunk_rows: int = CHUNK_ROWS) -> Tensor:
    """``smoothed_cross_entropy(F.linear(hidden, weight), targets, smoothing)`` without the [N, V]
    logits: hidden [N, R], weight [V, R] (no bias), targets [N] column indices of ``weight``.

    Under CPU autocast the products and the softmax run in the autocast dtype, as they would
    through ``F.linear``; the loss and the weight's gradient are summed in fp32.
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.size(1) != weight.size(1) \
            or targets.shape != hidden.shape[:1]:
        raise ValueError(f"expected hidden [N, R], weight [V, R] and targets [N], got "
                         f"{tuple(hidden.shape)}, {tuple(weight.shape)} and {tuple(targets.shape)}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return _LinearSmoothedCrossEntropy.apply(hidden, weight, targets, float(smoothing),
                                                 chunk_rows, dtype)
    with torch.autocast(device, enabled=False):
        return _chunked_loss(hidden, weight, targets, float(smoothing), chunk_rows, dtype,
                             with_grads=False)[0]
