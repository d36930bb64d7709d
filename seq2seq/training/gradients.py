"""The gradients of one update: scaled per target token and clipped in one pass, and refused when
their norm is not finite (a finite loss can still overflow in the backward pass)."""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import Tensor, nn


def scale_and_clip(parameters: Iterable[nn.Parameter], scale: float, clip_norm: float,
                   clip_value: float = 0.0) -> float:
    """Multiply the gradients by ``scale`` (1 / target tokens) and clip their norm to ``clip_norm``
    (0: no clipping), in one pass over them: the norm of the scaled gradients is ``scale`` times
    that of the summed ones, so both factors go into a single multiplication. Returns that norm,
    before any clipping (the figure that shows vanishing or exploding gradients); when it is not
    finite the gradients are left alone, and the update must be skipped: a clip factor of 0 times
    inf would put NaN into the optimizer's state for good.

    ``clip_value`` > 0 first clamps every scaled gradient element to ``[-clip_value, clip_value]``
    (``clip_grad_value_``; Pascanu et al., 2013, section 3.2 discuss both forms), and the norm
    clip then applies to the clamped gradients."""
    grads: list[Tensor] = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    norm = float(nn.utils.get_total_norm(grads)) * scale
    if not math.isfinite(norm):
        return norm
    if clip_value > 0:
        torch._foreach_mul_(grads, scale)
        torch._foreach_clamp_min_(grads, -clip_value)
        torch._foreach_clamp_max_(grads, clip_value)
        if clip_norm > 0:
            clamped = float(nn.utils.get_total_norm(grads))
            torch._foreach_mul_(grads, min(1.0, clip_norm / (clamped + 1e-6)))
        return norm
    if clip_norm > 0:
        scale *= min(1.0, clip_norm / (norm + 1e-6))  # as clip_grad_norm_
    torch._foreach_mul_(grads, scale)
    return norm
