"""The ``trainer`` config group: how long to train, the optimizer's and the schedule's settings,
validation, checkpoints and precision (``conf/trainer/default.yaml`` holds the values)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

from seq2seq.errors import ConfigError, check_range
from seq2seq.precision import check_precision
from seq2seq.training.lr_schedules import LRSchedule, Plateau
from seq2seq.training.schedules import TeacherForcingSchedule

log = logging.getLogger(__name__)


@dataclass
class TrainerSettings:
    """The `trainer` config group; its values live in ``conf/trainer/default.yaml`` alone."""

    max_epochs: int
    max_steps: Optional[int]
    max_minutes: Optional[float]            # stop (and keep the best checkpoint) after this long
    batch_tokens: int                       # padded tokens per batch (sentences x longest side)
    accumulate_batches: int                 # batches (per rank) whose gradients make one update
    max_sentences: Optional[int]
    lr: float
    clip_norm: float                        # the gradients' norm clipped to this (0: off)
    clip_value: float                       # > 0: each gradient element clamped to +-this first
    label_smoothing: float
    lr_metric: Optional[str]                # what the plateau watches; None: early_stopping_metric
    lr_decay_factor: Optional[float]        # old names of the plateau's factor and patience:
    lr_patience: Optional[int]              # copied into trainer.schedule when set
    min_lr: float                           # the floor of every schedule after its warmup
    lr_anneal_minutes: float                # > 0 (with max_minutes): over the budget's last N
                                            # minutes the LR falls linearly to min_lr instead
    validate_every: int                     # steps between validations; 0 = at epoch ends:
    validate_every_epochs: int              # after every Nth epoch (and after the last step)
    valid_beam: int
    valid_max_sentences: Optional[int]
    early_stopping_metric: str              # a validation metric; loss and ppl: lower is better
    early_stopping_patience: int            # validations without improvement before stopping
    log_every: int
    progress_bar: bool
    reset_optimizer: bool                   # resume=true: fresh Adam moments
    reset_schedule: bool                    # resume=true: the LR schedule starts afresh
    keep_checkpoints: int                   # step_N.pt files kept besides last.pt and best.pt
    average_last: int                       # >= 2: after training, average the last N step_N.pt
    ema_decay: float                        # > 0: validate, keep and test a moving average of
                                            # the weights (ema.py); 0: the weights themselves
    max_nonfinite: int                      # consecutive NaN/inf losses skipped before stopping
    precision: str                          # fp32 | bf16 | fp16 (the forward pass under autocast;
                                            # fp16 with a GradScaler) | auto (seq2seq/precision.py)
    teacher_forcing: TeacherForcingSchedule
    schedule: LRSchedule                    # conf/trainer/schedule: built by its YAML file

    def __post_init__(self) -> None:
        check_range("trainer.max_epochs", self.max_epochs, 1)
        check_range("trainer.batch_tokens", self.batch_tokens, 1)
        check_range("trainer.accumulate_batches", self.accumulate_batches, 1)
        check_range("trainer.lr", self.lr, 0.0)
        check_range("trainer.label_smoothing", self.label_smoothing, 0.0, 1.0)
        check_range("trainer.valid_beam", self.valid_beam, 1)
        check_range("trainer.validate_every", self.validate_every, 0)
        check_range("trainer.validate_every_epochs", self.validate_every_epochs, 1)
        check_range("trainer.keep_checkpoints", self.keep_checkpoints, 0)
        check_range("trainer.average_last", self.average_last, 0)
        if self.average_last > self.keep_checkpoints:
            raise ConfigError(f"trainer.average_last={self.average_last} needs as many step "
                              f"checkpoints kept; set trainer.keep_checkpoints >= "
                              f"{self.average_last} (it is {self.keep_checkpoints})")
        check_range("trainer.max_nonfinite", self.max_nonfinite, 1)
        check_range("trainer.lr_anneal_minutes", self.lr_anneal_minutes, 0.0)
        if self.lr_anneal_minutes > 0 and not (self.max_minutes and
                                               self.lr_anneal_minutes < self.max_minutes):
            raise ConfigError(f"trainer.lr_anneal_minutes={self.lr_anneal_minutes} is the end of "
                              "a time budget: it needs trainer.max_minutes set and larger "
                              f"(it is {self.max_minutes})")
        check_range("trainer.clip_norm", self.clip_norm, 0.0)
        check_range("trainer.clip_value", self.clip_value, 0.0)
        self._read_old_plateau_keys()
        self.schedule.check(self.max_steps, self.max_minutes)
        check_precision("trainer.precision", self.precision)
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"trainer.ema_decay={self.ema_decay!r}: expected 0 (off) or a "
                              "value below 1, such as 0.999")

    def _read_old_plateau_keys(self) -> None:
        """``trainer.lr_decay_factor`` and ``trainer.lr_patience``, from before the schedule group,
        set the plateau's ``factor`` and ``patience`` (with a warning naming the new keys), so
        that saved commands and experiment files keep their meaning."""
        old = {"factor": self.lr_decay_factor, "patience": self.lr_patience}
        given = {key: value for key, value in old.items() if value is not None}
        if not given:
            return
        names = {"factor": "lr_decay_factor", "patience": "lr_patience"}
        if not isinstance(self.schedule, Plateau):
            raise ConfigError(f"trainer.{names[next(iter(given))]} is the plateau schedule's "
                              f"setting; this run's schedule is {self.schedule.name}: remove it")
        for key, value in given.items():
            log.warning("trainer.%s is now trainer.schedule.%s: using %s", names[key], key, value)
            setattr(self.schedule, key, value)
        self.schedule.__post_init__()  # the same checks as the new keys get
