"""What the training loop keeps between steps and across a resume, what it asks of a topology
(``Objective``), and how a run stops early."""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import torch
from torch import Tensor, nn

from seq2seq.errors import CheckpointError, Seq2SeqError
from seq2seq.training.checkpoint import load_checkpoint

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """Counters saved in ``last.pt``, so a resumed run continues exactly where it stopped."""

    step: int = 0                   # optimizer updates
    epoch: int = 0
    batch_in_epoch: int = 0         # batches of this rank's share of the epoch already trained
    world_size: int = 1             # ranks that trained it (their shares depend on it)
    best_metric: float = -math.inf  # the early-stopping metric, negated when lower is better
    best_step: int = 0
    best_metrics: dict = field(default_factory=dict)  # every validation figure at best_step
    bad_validations: int = 0
    train_seconds: float = 0.0      # in training steps
    wall_seconds: float = 0.0       # since the run began, validation included: the clock of
                                    # trainer.max_minutes, carried over a resume
    train_tokens: int = 0
    validated_step: int = -1
    anneal_from_lr: float = 0.0     # the LR when lr_anneal_minutes began (0: not yet)
    schedule_from_step: int = 0     # where the LR schedule started (trainer.reset_schedule moves it)
    schedule_from_seconds: float = 0.0
    nonfinite_in_a_row: int = 0
    nonfinite_total: int = 0
    stop_reason: str = ""
    precision: str = ""             # what trainer.precision resolved to (the latest, if resumed)

    def count_update(self, loss: float, grad_norm: float, max_nonfinite: int, last: Path,
                     scaler_backoff: bool = False) -> bool:
        """Whether the update was made (its loss and gradient norm finite); count skipped ones and
        raise NonFiniteLoss after ``max_nonfinite`` in a row (naming ``last``, the run's last.pt,
        if it was saved: checkpoints never hold non-finite weights, as no update makes them).
        With ``scaler_backoff`` (fp16's GradScaler lowering its scale) an overflowing gradient of a
        finite loss is skipped without counting."""
        if math.isfinite(loss) and math.isfinite(grad_norm):
            self.nonfinite_in_a_row = 0
            return True
        if math.isfinite(loss) and scaler_backoff:
            log.info("step %d: fp16 gradients overflowed; update skipped, loss scale lowered",
                     self.step)
            return False
        self.nonfinite_in_a_row += 1
        self.nonfinite_total += 1
        what = f"loss is {loss}" if not math.isfinite(loss) else f"gradient norm is {grad_norm}"
        log.warning("step %d: %s; update skipped (%d in a row)", self.step, what,
                    self.nonfinite_in_a_row)
        if self.nonfinite_in_a_row >= max_nonfinite:
            last_good = last if good_checkpoint(last) else None
            raise NonFiniteLoss(
                f"training stopped at step {self.step}: {self.nonfinite_in_a_row} non-finite "
                f"losses or gradients in a row (trainer.max_nonfinite={max_nonfinite}); last good "
                f"checkpoint: {last_good or 'none saved yet'}. Try a lower trainer.lr or "
                "trainer.clip_norm.")
        return False


class TrainingInterrupted(Seq2SeqError):
    """SIGINT/SIGTERM arrived; the current step finished and last.pt was saved."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class NonFiniteLoss(Seq2SeqError):
    """Too many NaN/inf losses in a row."""


class Objective(Protocol):
    """What a topology trains and how it is scored (see ``seq2seq/topologies``)."""

    def loss(self, model: nn.Module, batch: Any, teacher_forcing: float,
             smoothing: float) -> Tensor:
        """The loss summed over the batch's ``batch.num_tgt_tokens`` predicted units."""

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Figures on the validation split; the early-stopping metric among them."""

    @property
    def metrics(self) -> Sequence[str]:
        """The names ``validate`` returns."""

    def checkpoint_extras(self) -> dict[str, Any]:
        """What a checkpoint needs besides the weights to be used alone (tokenizers, labels)."""


LOWER_IS_BETTER = ("loss", "ppl", "perplexity")


def rng_state() -> dict[str, Any]:
    """The random states a step draws from: Python's, torch's CPU one and, once CUDA is in use,
    the current GPU's (dropout masks on a GPU come from it)."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def restore_rng(state: TrainState, payload: dict[str, Any], dist: Any, seed: int,
                path: str | Path) -> None:
    """Each rank's RNG state as a checkpoint saved it. With another number of ranks (``dist``:
    the run's ``Distributed``) each rank's share of an epoch differs: keep the fraction of the
    epoch already trained, and seed each rank afresh."""
    rng_ranks = payload.get("rng_ranks") or [payload["rng"]]
    world = dist.world_size
    if state.world_size == world:
        set_rng_state(rng_ranks[dist.rank])
        return
    log.warning("%s was trained on %d rank(s), this run has %d: resuming at the same "
                "fraction of the epoch, not the same batch", path, state.world_size, world)
    state.batch_in_epoch = state.batch_in_epoch * state.world_size // world
    state.world_size = world
    set_rng_state(rng_ranks[0])
    if dist.enabled:
        torch.manual_seed(seed + 1000 * state.step + dist.rank)


def good_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a readable checkpoint with finite weights (one to go back to)."""
    try:
        return path.exists() and finite_weights(load_checkpoint(path))
    except CheckpointError:
        return False


def finite_weights(payload: dict[str, Any]) -> bool:
    """Whether every floating-point tensor of a checkpoint's model is finite."""
    return all(bool(torch.isfinite(t).all()) for t in payload.get("model", {}).values()
               if isinstance(t, Tensor) and t.is_floating_point())


def check_finite(model: nn.Module, step: int) -> None:
    """NonFiniteLoss instead of a checkpoint of weights that hold NaN or inf."""
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise NonFiniteLoss(f"step {step}: the model's weights hold NaN or inf; they were not "
                            "saved (the run folder keeps its last good checkpoint). Try a lower "
                            "trainer.lr or trainer.clip_norm.")
