"""Encoders, attention, decoders, and the topologies built from them."""

from torch import nn


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
