"""Schedules over training: the teacher-forcing ratio by step, the LR over a time budget's end."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from seq2seq.errors import check_choice, check_range

SCHEDULES = ("constant", "linear", "exponential", "inverse_sigmoid")


@dataclass(frozen=True)
class TeacherForcingSchedule:
    """Probability of feeding the reference token (rather than the model's own prediction) to
    the decoder, as training goes on (scheduled sampling, Bengio et al., 2015, section 2.4).

    constant: always ``start``. linear: from ``start`` to ``end`` over ``decay_steps``.
    exponential: ``start * (end / start) ** (step / decay_steps)``, then ``end``.
    inverse_sigmoid: ``end + (start - end) * k / (k + exp(step / k))`` with ``k = decay_steps / 10``.
    The values live in ``conf/trainer/default.yaml`` (``trainer.teacher_forcing``).
    """

    kind: Literal["constant", "linear", "exponential", "inverse_sigmoid"]
    start: float
    end: float
    decay_steps: int

    def __post_init__(self) -> None:
        check_choice("trainer.teacher_forcing.kind", self.kind, SCHEDULES)
        check_range("trainer.teacher_forcing.start", self.start, 0.0, 1.0)
        check_range("trainer.teacher_forcing.end", self.end, 0.0, 1.0)
        check_range("trainer.teacher_forcing.decay_steps", self.decay_steps, 1)

    def ratio(self, step: int) -> float:
        """The teacher-forcing ratio at training step ``step`` (0-based)."""
        progress = min(step / self.decay_steps, 1.0)
        if self.kind == "constant":
            return self.start
        if self.kind == "linear":
            return self.start + (self.end - self.start) * progress
        if self.kind == "exponential":
            if self.start == 0.0:
                return self.end
            return self.start * (max(self.end, 1e-6) / self.start) ** progress
        k = max(self.decay_steps / 10.0, 1.0)
        return self.end + (self.start - self.end) * k / (k + math.exp(min(step / k, 700.0)))


def annealed_lr(start_lr: float, min_lr: float, remaining_seconds: float,
                window_seconds: float) -> float:
    """The LR with ``remaining_seconds`` of a time budget left, falling linearly from
    ``start_lr`` (at ``window_seconds`` left) to ``min_lr`` (at none left): the budget-aware
    linear decay of Li et al. (2020, "Budgeted Training"), which ends a run at a low LR whenever
    the budget, not a plateau, is what stops it."""
    fraction = min(max(remaining_seconds / window_seconds, 0.0), 1.0)
    return max(min_lr, start_lr * fraction)
