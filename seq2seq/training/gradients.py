"""The gradients of one update: scaled per target token and clipped in one pass, and refused when
their norm is not finite (a finite loss can still overflow in the backward pass)."""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import Tensor, nn


def scale_and_clip(parameters: Iterable[nn.Parameter], scale: float, clip_norm: float) -> float:
    """Multiply the gradients by ``scale`` (1 / target tokens) and clip their norm to ``clip_norm``
    (0: no clipping), in one pass over them: the norm of the scaled gradients is ``scale`` times
    that of the summed ones, so both factors go into a single multiplication. Returns that norm;
    when it is not finite the gradients are left alone, and the update must be skipped: a clip
    factor of 0 times inf would put NaN into the optimizer's state for good."""
    grads: list[Tensor] = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    norm = float(nn.utils.get_total_norm(grads)) * scale
    if not math.isfinite(norm):
        return norm
    if clip_norm > 0:
        scale *= min(1.0, clip_norm / (norm + 1e-6))  # as clip_grad_norm_
    torch._foreach_mul_(grads, scale)
    return norm
