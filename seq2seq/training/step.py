"""The gradients of one update: each batch moved to the model's device, its loss under autocast,
the backward passes (fp16: of a scaled loss, ``torch.amp.GradScaler``), and, under torchrun,
``DistributedDataParallel``'s all-reduce of the gradients after the step's last batch only.

The loss of a batch is a sum over its target tokens, and the update's gradient is the sum over all
ranks' batches divided by their target tokens. DDP *averages* the gradients over the ranks, so
the division is by tokens / world_size (``UpdateStep.apply``): the same maths as a single process
accumulating the same batches.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Sequence

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from seq2seq.device import model_device, to_device
from seq2seq.precision import autocast
from seq2seq.training.distributed import Distributed
from seq2seq.training.gradients import scale_and_clip
from seq2seq.training.state import Objective

# The usual first scale of a GradScaler is 2**16 for a loss averaged over tokens; the losses here
# are summed over a batch's tokens (``trainer.batch_tokens`` padded tokens at most), so their
# gradients are that many times larger already.
MEAN_LOSS_SCALE = 2.0 ** 16
# Below this scale an overflow is no longer the scale's fault: fp16's smallest subnormal.
MIN_SCALE = 2.0 ** -24


class LossModule(nn.Module):
    """The objective's loss as a module's forward, so that DDP sees the whole of it: an objective
    may use the model outside its ``forward`` (the fused output layer and loss), and DDP reduces
    only the gradients of what ran inside the module it wraps."""

    def __init__(self, model: nn.Module, objective: Objective) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, batch: Any, teacher_forcing: float, smoothing: float) -> Tensor:
        return self.objective.loss(self.model, batch, teacher_forcing, smoothing)


def grad_scaler(precision: str, device: torch.device, batch_tokens: int) -> torch.amp.GradScaler:
    """A GradScaler for fp16 (enabled) or a disabled one, whose calls do nothing."""
    return torch.amp.GradScaler(device.type, init_scale=MEAN_LOSS_SCALE / max(batch_tokens, 1),
                                enabled=precision == "fp16")


class UpdateStep:
    """Gradients of a step's batches on ``model``'s device, and the update made from them."""

    def __init__(self, model: nn.Module, objective: Objective, precision: str,
                 distributed: Distributed, batch_tokens: int) -> None:
        self.model, self.precision, self.dist = model, precision, distributed
        self.device = model_device(model)
        runner: nn.Module = LossModule(model, objective)
        if distributed.enabled:
            # Rank 0's weights everywhere (DDP broadcasts them as it is built). Parameters some
            # batches do not use (a joint tagger's class head on a batch without classes) are
            # found after each forward pass; buffers (kept output ids) never change in training.
            runner = DistributedDataParallel(
                runner, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                broadcast_buffers=False, find_unused_parameters=True)
        self.runner = runner
        self.scaler = grad_scaler(precision, self.device, batch_tokens)

    def _sync(self, last: bool) -> contextlib.AbstractContextManager:
        """DDP all-reduces in the last backward pass of a step only (``no_sync`` before it)."""
        if last or not isinstance(self.runner, DistributedDataParallel):
            return contextlib.nullcontext()
        return self.runner.no_sync()

    def backward(self, batches: Sequence[Any], teacher_forcing: float, smoothing: float,
                 flags: Sequence[float] = ()) -> tuple[float, int, list[float]]:
        """Forward and backward passes over this rank's ``batches``; returns the loss summed over
        every rank's batches, their target tokens, and ``flags`` summed over the ranks."""
        losses: list[Tensor] = []
        tokens = 0
        for i, batch in enumerate(batches):
            tokens += batch.num_tgt_tokens  # counted on the host copy: no device round trip
            batch = to_device(batch, self.device)
            with self._sync(i == len(batches) - 1):
                with autocast(self.precision, self.device.type):
                    loss = self.runner(batch, teacher_forcing, smoothing)
                self.scaler.scale(loss).backward()
            losses.append(loss.detach().double())
        # one device-to-host copy per step (on a GPU each float() waits for the queue)
        loss_sum = float(torch.stack(losses).sum()) if losses else 0.0
        loss_sum, total, *flag_sums = self.dist.sum_scalars(
            [loss_sum, tokens, *(float(f) for f in flags)], self.device)
        return loss_sum, int(round(total)), flag_sums

    def apply(self, optimizer: torch.optim.Optimizer, loss_per_token: float, tokens: int,
              clip_norm: float, clip_value: float = 0.0) -> float:
        """Scale the gradients to those of the loss per target token, clip them and update the
        weights; returns the gradient norm (NaN: not computed, the loss was not finite). A norm
        that is not finite skips the update (fp16: the GradScaler halves its scale)."""
        if not math.isfinite(loss_per_token):
            return math.nan
        self.scaler.unscale_(optimizer)  # fp16: divides by the loss scale, notes inf/NaN
        world = self.dist.world_size if isinstance(self.runner, DistributedDataParallel) else 1
        norm = scale_and_clip(self.model.parameters(), world / max(tokens, 1), clip_norm,
                              clip_value)
        if math.isfinite(norm):
            self.scaler.step(optimizer)  # optimizer.step(), unless fp16 found inf/NaN
        self.scaler.update()
        return norm

    def scaler_backed_off(self) -> bool:
        """Whether fp16's GradScaler may still lower its scale: its skipped updates then search for
        a scale (GradScaler's design), and only those below ``MIN_SCALE`` count as non-finite."""
        return self.scaler.is_enabled() and self.scaler.get_scale() >= MIN_SCALE

    def state_dict(self) -> dict[str, Any]:
        """The GradScaler's state (empty unless fp16), saved with the checkpoint."""
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state)
