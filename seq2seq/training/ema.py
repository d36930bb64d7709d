"""An exponential moving average of the weights (Polyak averaging; Nematus's and Marian's
``exponential-smoothing``): a smoothed copy of the model, updated after every optimizer step, that
is validated, kept as ``best.pt`` and tested in place of the raw weights. At a high learning rate
the raw weights jump around the minimum; their running mean sits closer to it, for the cost of
one multiply-add over the parameters per update.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from seq2seq.errors import CheckpointError, ConfigError


class WeightAverage:
    """ema = d * ema + (1 - d) * weights after each update, with d = min(decay, (1 + n) / (10 + n))
    after n updates: early on the average forgets its random start quickly (the warm-up of
    TensorFlow's ``ExponentialMovingAverage(num_updates=...)``), later it spans about the last
    1 / (1 - decay) updates."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"trainer.ema_decay={decay!r}: expected a value in (0, 1)")
        self.decay, self.updates = decay, 0
        # The model's state_dict tensors share storage with its parameters and buffers, so these
        # stay current as the optimizer updates them in place. Tied weights appear under both of
        # their names; averaging each name keeps the copies equal.
        live = model.state_dict()
        self.names = [name for name, value in live.items() if value.is_floating_point()]
        self._live = [live[name] for name in self.names]
        self.weights = [value.detach().clone() for value in self._live]

    def update(self) -> None:
        """Move the average towards the current weights (call after each optimizer step)."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            torch._foreach_lerp_(self.weights, self._live, 1.0 - decay)

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """Inside the block the model holds the averaged weights; its own come back after."""
        saved = [value.clone() for value in self._live]
        with torch.no_grad():
            torch._foreach_copy_(self._live, self.weights)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self._live, saved)

    def model_state(self, model: nn.Module) -> dict[str, Tensor]:
        """The model's state_dict with the averaged weights in place of its own."""
        state = dict(model.state_dict())
        state.update({name: value.clone() for name, value in zip(self.names, self.weights)})
        return state

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates,
                "weights": dict(zip(self.names, self.weights))}

    def load_state_dict(self, state: dict[str, Any], source: str = "checkpoint") -> None:
        weights = state["weights"]
        if set(weights) != set(self.names):
            raise CheckpointError(f"{source}: its weight average holds other tensors than the "
                                  "model's; expected a checkpoint of this model")
        with torch.no_grad():
            for name, target in zip(self.names, self.weights):
                target.copy_(weights[name])
        self.updates = int(state["updates"])
