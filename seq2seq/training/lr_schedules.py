"""Learning-rate schedules, the ``trainer/schedule`` config group (``conf/trainer/schedule``): a
linear warmup in updates before any of them, then the LR stays (``constant``), halves when a
validation figure stalls (``plateau``), falls as the inverse square root of the update
(``inverse_sqrt``, the "noam" schedule), follows a half cosine over the run's steps or its time
budget (``cosine``), or drops by a factor every N updates (``step``).

Each schedule gives the LR of an update from the update's number and the time spent, both counted
from where the schedule started (``TrainState.schedule_from_step``/``_seconds``); only the plateau
keeps a memory, saved with the checkpoint. So a resumed run sets the same LRs as one that never
stopped, and ``trainer.reset_schedule`` restarts a schedule by moving its start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Optional

from seq2seq.errors import ConfigError, check_choice, check_range


@dataclass(frozen=True)
class Clock:
    """Where a run is, for its schedule: updates and seconds since the schedule started, and what
    the run allows (``max_steps`` or the epochs' updates; ``max_minutes``)."""

    update: int                       # 1-based number of the update whose LR is asked for
    seconds: float                    # of the time budget's clock (validation included)
    total_updates: Optional[int]      # the run's last update, when known
    budget_seconds: Optional[float]   # trainer.max_minutes in seconds, if set


@dataclass
class LRSchedule:
    """What every schedule shares: ``warmup_steps`` updates whose LR rises linearly from
    ``trainer.lr / warmup_steps`` to ``trainer.lr`` (Goyal et al., 2017, section 2.2; Vaswani
    et al., 2017, section 5.3), before the schedule's own rule takes over."""

    name: ClassVar[str] = "constant"
    warmup_steps: int

    def __post_init__(self) -> None:
        check_range("trainer.schedule.warmup_steps", self.warmup_steps, 0)

    def check(self, max_steps: Optional[int], max_minutes: Optional[float]) -> None:
        """A ConfigError when the schedule needs a budget the run does not set."""

    def lr(self, base_lr: float, min_lr: float, clock: Clock) -> float:
        """The LR of update ``clock.update``."""
        if self.warmup_steps and clock.update <= self.warmup_steps:
            return base_lr * clock.update / self.warmup_steps
        return self.decayed(base_lr, min_lr, clock)

    def decayed(self, base_lr: float, min_lr: float, clock: Clock) -> float:
        """The LR after the warmup."""
        return base_lr

    def after_validation(self, value: float) -> None:
        """The validation figure ``trainer.lr_metric`` (only the plateau reads it)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` saved."""


@dataclass
class Constant(LRSchedule):
    """``trainer.lr`` throughout (after the warmup)."""


@dataclass
class Plateau(LRSchedule):
    """The LR times ``factor`` when the validation figure the trainer watches
    (``trainer.lr_metric``) has not improved, by a relative 1e-4, for more than ``patience``
    validations, down to ``trainer.min_lr``: the rule of
    ``torch.optim.lr_scheduler.ReduceLROnPlateau`` (JoeyNMT's default), kept as a scale of
    ``trainer.lr`` so that the warmup and a changed ``trainer.lr`` compose with it."""

    name: ClassVar[str] = "plateau"
    factor: float
    patience: int
    lower_is_better: bool = field(default=False, init=False)  # set by the trainer
    scale: float = field(default=1.0, init=False)
    best: Optional[float] = field(default=None, init=False)
    bad_validations: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.factor < 1.0:
            raise ConfigError(f"trainer.schedule.factor={self.factor!r}: expected a value "
                              "between 0 and 1 (the LR is multiplied by it)")
        check_range("trainer.schedule.patience", self.patience, 0)

    def decayed(self, base_lr: float, min_lr: float, clock: Clock) -> float:
        return max(min_lr, base_lr * self.scale) if self.scale < 1.0 else base_lr

    def after_validation(self, value: float) -> None:
        if self.best is None or self._better(value, self.best):
            self.best, self.bad_validations = value, 0
            return
        self.bad_validations += 1
        if self.bad_validations > self.patience:
            self.scale *= self.factor
            self.bad_validations = 0

    def _better(self, value: float, best: float) -> bool:
        """ReduceLROnPlateau's relative threshold of 1e-4."""
        if self.lower_is_better:
            return value < best * (1 - 1e-4)
        return value > best * (1 + 1e-4)

    def reset_to(self, scale: float) -> None:
        """Start afresh (no best figure yet) at ``scale`` times ``trainer.lr``."""
        self.scale, self.best, self.bad_validations = scale, None, 0

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "best": self.best, "bad_validations": self.bad_validations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale = float(state.get("scale", 1.0))
        self.best = state.get("best")
        self.bad_validations = int(state.get("bad_validations", 0))


@dataclass
class InverseSqrt(LRSchedule):
    """``trainer.lr * sqrt(warmup_steps / update)`` after the warmup, down to ``trainer.min_lr``:
    the Transformer's "noam" schedule (Vaswani et al., 2017, eq. 3) with its peak set by
    ``trainer.lr`` rather than the model's width, as fairseq's ``inverse_sqrt``."""

    name: ClassVar[str] = "inverse_sqrt"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.warmup_steps < 1:
            raise ConfigError("trainer.schedule.warmup_steps=0: inverse_sqrt decays from the "
                              "end of its warmup; expected at least 1 (e.g. 1000)")

    def decayed(self, base_lr: float, min_lr: float, clock: Clock) -> float:
        return max(min_lr, base_lr * math.sqrt(self.warmup_steps / clock.update))


@dataclass
class Cosine(LRSchedule):
    """Half a cosine from ``trainer.lr`` to ``trainer.min_lr`` (Loshchilov & Hutter, 2017, eq. 5,
    one cycle) over the run's updates (``over: steps``, after the warmup) or over its time budget
    (``over: minutes``): a slower machine then still ends its run annealed, where a schedule in
    steps would stop half-way down. ``length``: the steps or minutes the cosine spans; None: the
    run's (``trainer.max_steps``, else the updates of ``trainer.max_epochs``;
    ``trainer.max_minutes``)."""

    name: ClassVar[str] = "cosine"
    over: Literal["steps", "minutes"]
    length: Optional[float]

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("trainer.schedule.over", self.over, ("steps", "minutes"))
        if self.length is not None:
            check_range("trainer.schedule.length", self.length, 1e-9)

    def check(self, max_steps: Optional[int], max_minutes: Optional[float]) -> None:
        if self.over == "minutes" and self.length is None and not max_minutes:
            raise ConfigError("trainer.schedule.over=minutes spans the time budget: set "
                              "trainer.max_minutes, or trainer.schedule.length (minutes)")

    def progress(self, clock: Clock) -> float:
        """How far along the cosine the update is, from 0 to 1."""
        if self.over == "minutes":
            budget = 60 * self.length if self.length is not None else clock.budget_seconds
            return min(clock.seconds / budget, 1.0) if budget else 0.0
        total = self.length if self.length is not None else clock.total_updates
        if not total:
            return 0.0
        span = max(total - self.warmup_steps, 1)
        return min((clock.update - self.warmup_steps) / span, 1.0)

    def decayed(self, base_lr: float, min_lr: float, clock: Clock) -> float:
        floor = min(min_lr, base_lr)
        return floor + (base_lr - floor) * 0.5 * (1 + math.cos(math.pi * self.progress(clock)))


@dataclass
class StepDecay(LRSchedule):
    """``trainer.lr * gamma ** (updates after the warmup // step_size)``, down to
    ``trainer.min_lr`` (torch's ``StepLR``; OpenNMT-py's ``decay_steps`` rule)."""

    step_size: int
    gamma: float

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("trainer.schedule.step_size", self.step_size, 1)
        if not 0.0 < self.gamma < 1.0:
            raise ConfigError(f"trainer.schedule.gamma={self.gamma!r}: expected a value between "
                              "0 and 1 (the LR is multiplied by it every step_size updates)")

    name: ClassVar[str] = "step"

    def decayed(self, base_lr: float, min_lr: float, clock: Clock) -> float:
        drops = (clock.update - self.warmup_steps - 1) // self.step_size
        return max(min_lr, base_lr * self.gamma ** drops)
