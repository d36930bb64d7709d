"""The training loop: Adam, gradient clipping, an LR schedule (``lr_schedules.py``), validation,
early stopping, checkpoints ``best.pt`` and ``last.pt``, metrics and a progress bar.

What is trained and how it is scored is the ``Objective``'s business (one per topology, in
``seq2seq/topologies``); the loop is the same for all of them.
"""

from __future__ import annotations

import copy
import logging
import math
import signal
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import nn
from tqdm import tqdm

from seq2seq.data.batching import groups_of
from seq2seq.device import model_device
from seq2seq.errors import CheckpointError, ConfigError
from seq2seq.precision import resolve_precision
from seq2seq.release import refuse_resume
from seq2seq.runtime import rebalance_threads
from seq2seq.training.checkpoint import CheckpointDir, load_checkpoint, save_checkpoint
from seq2seq.training.distributed import Distributed
from seq2seq.training.ema import WeightAverage
from seq2seq.training.lr_schedules import Clock, LRSchedule, Plateau
from seq2seq.training.metrics_log import LogWindow, MetricsLog, plot_learning_curve
from seq2seq.training.resumption import check_resumable, resume_schedule
from seq2seq.training.schedules import annealed_lr
from seq2seq.training.settings import TrainerSettings
from seq2seq.training.signals import StopSignals
from seq2seq.training.state import (
    LOWER_IS_BETTER,
    Objective,
    TrainingInterrupted,
    TrainState,
    check_finite,
    restore_rng,
    rng_state,
)
from seq2seq.training.step import UpdateStep

log = logging.getLogger(__name__)


class Trainer:
    """Trains a model on batches (``BucketedBatches``) and validates it through its objective.

    Under torchrun, each rank trains on its share of the batches (see ``distributed.py``); only
    rank 0 validates (and tells the others the result) and writes files. The model trains on the
    device it is on (``seq2seq/device.py``); batches follow it (``step.py``).
    """

    def __init__(self, settings: TrainerSettings, model: nn.Module, objective: Objective,
                 run_dir: str | Path, config: dict,
                 distributed: Distributed = Distributed()) -> None:
        self.settings, self.model, self.objective = settings, model, objective
        self.dist = distributed
        self.run_dir, self.config = Path(run_dir), config
        self.checkpoints = CheckpointDir(self.run_dir / "checkpoints", settings.keep_checkpoints)
        # The fused kernel does Adam's element-wise work in one pass per tensor (~3 % of a CPU
        # step of the reference model otherwise).
        params = list(model.parameters())
        fused = all(p.device.type in ("cpu", "cuda") for p in params)
        self.optimizer = torch.optim.Adam(params, lr=settings.lr, fused=fused)
        self.higher_is_better = settings.early_stopping_metric not in LOWER_IS_BETTER
        # A smooth metric (validation loss) can drive the LR while a noisy one (greedy BLEU)
        # picks the best checkpoint: BLEU noise alone would halve the LR too early.
        self.lr_metric = settings.lr_metric or settings.early_stopping_metric
        self.schedule = self._fresh_schedule()
        self._total_updates: Optional[int] = settings.max_steps  # else known when fit() starts
        self.state = TrainState(world_size=distributed.world_size)
        # Rank 0 decides what auto means, so that all ranks compute alike.
        self.precision = distributed.broadcast(
            resolve_precision(settings.precision, "trainer.precision", model_device(model).type)
            if distributed.is_main else None)
        self.update = UpdateStep(model, objective, self.precision, distributed, settings.batch_tokens)
        self.ema = WeightAverage(model, settings.ema_decay) if settings.ema_decay > 0 else None
        self._signals = StopSignals()
        self._window = LogWindow()  # loss and throughput since the last log line
        self.grad_norm = math.nan  # of the last update's scaled gradients (before clipping)
        self._started: Optional[float] = None  # perf_counter() at the run's start, while fitting

    def _fresh_schedule(self) -> LRSchedule:
        """The configured schedule with no memory (``trainer.schedule``; the settings keep theirs
        untouched)."""
        schedule = copy.deepcopy(self.settings.schedule)
        if isinstance(schedule, Plateau):
            schedule.lower_is_better = self.lr_metric in LOWER_IS_BETTER
        return schedule

    def _clock(self, elapsed_seconds: float) -> Clock:
        """The schedule's view of the next update, counted from where the schedule started."""
        s = self.state
        start = s.schedule_from_step
        total = self._total_updates
        return Clock(update=s.step + 1 - start,
                     seconds=max(elapsed_seconds - s.schedule_from_seconds, 0.0),
                     total_updates=None if total is None else max(total - start, 1),
                     budget_seconds=None if not self.settings.max_minutes else
                     max(60 * self.settings.max_minutes - s.schedule_from_seconds, 1e-9))

    def _set_lr(self, elapsed_seconds: float) -> None:
        """The schedule's LR for the next update; in the budget's last ``lr_anneal_minutes`` the
        LR set at the last validation stays."""
        if self.state.anneal_from_lr:
            return
        lr = self.schedule.lr(self.settings.lr, self.settings.min_lr, self._clock(elapsed_seconds))
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    # -- checkpoints ---------------------------------------------------------------------------
    def _payload(self) -> dict[str, Any]:
        """What a checkpoint holds. Collective under torchrun: every rank's RNG state goes in.
        Weights that are not finite are never saved (``check_finite``)."""
        check_finite(self.model, self.state.step)
        rng_ranks = self.dist.gather(rng_state())
        payload = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                   "scheduler": {"name": self.schedule.name, **self.schedule.state_dict()},
                   "trainer": asdict(self.state),
                   "config": self.config, **self.objective.checkpoint_extras(),
                   "rng": rng_ranks[0], "rng_ranks": rng_ranks,
                   "grad_scaler": self.update.state_dict()}  # fp16's loss scale
        if self.ema is not None:
            payload["ema"] = self.ema.state_dict()
        return payload

    def save_last(self) -> Path:
        if self._started is not None:
            self.state.wall_seconds = time.perf_counter() - self._started
        payload = self._payload()
        if self.dist.is_main:
            self.checkpoints.save_last(payload, self.state.step)
        return self.checkpoints.last

    def _save_best(self) -> None:
        payload = self._payload()
        if self.ema is not None:
            # best.pt holds the weights that were validated: the average (runs resume from
            # last.pt, which keeps the weights and the average apart).
            payload["model"] = self.ema.model_state(self.model)
            del payload["ema"]
        if self.dist.is_main:
            save_checkpoint(self.checkpoints.best, payload)

    def resume(self, path: str | Path) -> None:
        """Restore model, optimizer, scheduler, counters and RNG states from a checkpoint whose
        settings this run keeps (``check_resumable``); a new ``trainer.lr`` takes effect."""
        payload = load_checkpoint(path)
        refuse_resume(payload, path)
        check_resumable(payload["config"], self.config, path)
        try:
            self.model.load_state_dict(payload["model"])
        except RuntimeError as error:  # torch lists every key and shape that does not fit
            raise CheckpointError(
                f"{path}: cannot resume from it, its weights do not fit this run's model: {error}\n"
                "Resume with the config (and training data) it was trained with, or train "
                "from scratch in another run folder (hydra.run.dir=...)") from None
        if self.settings.reset_optimizer:
            log.info("%s: trainer.reset_optimizer: Adam starts afresh", path)
        else:
            self.optimizer.load_state_dict(payload["optimizer"])  # onto the parameters' device
            self.update.load_state_dict(payload.get("grad_scaler") or {})
        if self.ema is not None and "ema" in payload:
            self.ema.load_state_dict(payload["ema"], str(path))
        elif self.ema is not None:
            log.warning("%s has no weight average (trained without trainer.ema_decay): the "
                        "average starts from its weights", path)
            self.ema = WeightAverage(self.model, self.settings.ema_decay)
        # best_bleu: a field of checkpoints written before best_metrics held every figure
        self.state = TrainState(**{k: v for k, v in payload["trainer"].items() if k != "best_bleu"})
        self.state.stop_reason = ""
        self._resume_schedule(payload, path)
        if self.state.precision and self.state.precision != self.precision:
            log.warning("%s was trained in %s, this run continues in %s (trainer.precision)",
                        path, self.state.precision, self.precision)
        restore_rng(self.state, payload, self.dist, self.config.get("seed", 0), path)
        log.info("Resumed from %s at step %d (epoch %d, batch %d)", path, self.state.step,
                 self.state.epoch + 1, self.state.batch_in_epoch)

    def _resume_schedule(self, payload: dict[str, Any], path: str | Path) -> None:
        """The schedule's memory and start from the checkpoint (``resume_schedule``), then the
        LR of the next update."""
        resume_schedule(self.schedule, self.state, payload, self.settings, self.config,
                        self.lr_metric, path)
        self._set_lr(self.state.wall_seconds or self.state.train_seconds)

    # -- one step ------------------------------------------------------------------------------
    def train_step(self, batches: Sequence[Any], flags: Sequence[bool] = (),
                   elapsed_seconds: float = 0.0) -> tuple[float, int, list[bool]]:
        """One update from this rank's ``batches`` and every other rank's.

        The gradient is that of the loss summed over all ranks' batches divided by their target
        tokens, so it does not depend on how the batches are split among ranks or accumulated.
        A non-finite loss or gradient norm (``grad_norm``) skips the update (counted, and fatal
        when repeated). ``flags`` (e.g. "a signal arrived") travel in the all-reduce of the
        loss and token counts and come back true if any rank set them; so does each rank's
        ``elapsed_seconds``, whose mean sets the LR of a time-based schedule alike on every rank.
        Returns the loss per target token, the target tokens of the step and the flags.
        """
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        ratio = self.settings.teacher_forcing.ratio(self.state.step)
        loss_sum, tokens, sums = self.update.backward(
            batches, ratio, self.settings.label_smoothing, [*flags, elapsed_seconds])
        flag_sums, elapsed_sum = sums[:-1], sums[-1]
        self._set_lr(elapsed_sum / self.dist.world_size)
        value = loss_sum / max(tokens, 1)
        self.grad_norm = self.update.apply(self.optimizer, value, tokens, self.settings.clip_norm,
                                           self.settings.clip_value)
        if math.isfinite(self.grad_norm) and self.ema is not None:
            self.ema.update()
        return value, tokens, [f > 0 for f in flag_sums]

    # -- validation ----------------------------------------------------------------------------
    def validate(self) -> dict[str, float]:
        """The objective's figures for the weights being kept: the average, with ema_decay."""
        self.model.eval()
        if self.ema is None:
            metrics = self.objective.validate(self.model)
        else:
            with self.ema.swapped_in():
                metrics = self.objective.validate(self.model)
        for option, name in (("early_stopping_metric", self.settings.early_stopping_metric),
                             ("lr_metric", self.lr_metric)):
            if name not in metrics:
                raise ConfigError(f"trainer.{option}={name} is not a validation figure of this "
                                  f"topology: choose from {', '.join(sorted(metrics))}")
        return metrics

    def _after_validation(self, metrics: dict[str, float], final: bool,
                          elapsed_seconds: float = 0.0) -> bool:
        """Keep the best model; unless ``final``, decay the LR and say whether to stop early.
        The final validation (of steps since the last one) leaves the schedule alone, so a run
        stopped by its budget and resumed trains exactly like one that never stopped."""
        s, settings = self.state, self.settings
        value = metrics[settings.early_stopping_metric]
        score = value if self.higher_is_better else -value
        improved = score > s.best_metric
        if improved:
            s.best_metric, s.best_step = score, s.step
            s.best_metrics = {k: float(v) for k, v in metrics.items()}  # plain floats: weights_only
            self._save_best()
        if final:
            return False
        self._update_lr(metrics, elapsed_seconds)
        s.bad_validations = 0 if improved else s.bad_validations + 1
        self.save_last()
        if s.bad_validations >= settings.early_stopping_patience:
            s.stop_reason = (f"early stopping: no better validation {settings.early_stopping_metric} "
                             f"in {s.bad_validations} validations")
            return True
        return False

    def _update_lr(self, metrics: dict[str, float], elapsed_seconds: float) -> None:
        """The schedule reads the validation (the plateau lowers the LR when ``lr_metric``
        stalls); in the budget's last ``lr_anneal_minutes`` the LR falls linearly to ``min_lr``
        instead, set after each validation (a staircase of one step per validation) from rank 0's
        clock, so that every rank sets the same LR."""
        settings, s = self.settings, self.state
        if settings.lr_anneal_minutes > 0 and settings.max_minutes:  # both: checked in settings
            window = 60 * settings.lr_anneal_minutes
            remaining = 60 * settings.max_minutes - elapsed_seconds
            if remaining <= window:
                if not s.anneal_from_lr:
                    s.anneal_from_lr = self.optimizer.param_groups[0]["lr"]
                    log.info("step %d: the budget's last %g minutes: the LR falls linearly from "
                             "%.2g to %.2g", s.step, settings.lr_anneal_minutes, s.anneal_from_lr,
                             settings.min_lr)
                lr = annealed_lr(s.anneal_from_lr, settings.min_lr, remaining, window)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                return
        self.schedule.after_validation(float(metrics[self.lr_metric]))
        self._set_lr(elapsed_seconds)

    def _validate_and_log(self, metrics_log: Optional[MetricsLog], started: float,
                          final: bool = False) -> bool:
        # Rank 0 validates and reads the clock; the others wait for its figures so that every
        # rank takes the same LR-decay and early-stopping decisions.
        metrics, elapsed = self.dist.broadcast(
            (self.validate(), time.perf_counter() - started) if self.dist.is_main else None)
        self.state.validated_step = self.state.step
        lr = self.optimizer.param_groups[0]["lr"]
        if metrics_log is not None:
            metrics_log.write(step=self.state.step, epoch=self.state.epoch, split="valid", lr=lr,
                              elapsed_seconds=elapsed, **metrics)
        log.info("step %d: valid %s (lr %.2g)", self.state.step,
                 " ".join(f"{k} {v:.4g}" for k, v in metrics.items()), lr)
        stop = self._after_validation(metrics, final, elapsed)
        # A budget that ran out during this validation stops the run here, not after one more
        # step and a second validation of nearly the same weights; every rank reads rank 0's
        # clock, so they agree.
        return stop or (not final and self._out_of_budget(self._past_budget(elapsed)))

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, batches: Any) -> TrainState:
        """Train until max_epochs/max_steps/max_minutes or early stopping; return the counters.

        SIGINT/SIGTERM let the current step finish, save last.pt and raise TrainingInterrupted.
        """
        settings, s = self.settings, self.state
        s.precision = self.precision
        metrics_log = MetricsLog(self.run_dir, extra_columns=tuple(self.objective.metrics)) \
            if self.dist.is_main else None
        # The budget's clock goes on from where a resumed run stopped (checkpoints from before
        # wall_seconds existed: from its training steps' time).
        started = self._started = time.perf_counter() - (s.wall_seconds or s.train_seconds)
        if settings.max_steps is None:  # the updates of max_epochs, for a schedule over steps
            per_epoch = -(-batches.num_batches(0) // settings.accumulate_batches)
            self._total_updates = settings.max_epochs * per_epoch
        self._window = LogWindow()
        with self._signals:
            try:
                # A run resumed with its budget spent takes no step (rank 0's clock decides).
                stop = self._out_of_budget(self._past_budget(self.dist.broadcast(
                    time.perf_counter() - started if self.dist.is_main else None)))
                while s.epoch < settings.max_epochs and not stop:
                    stop = self._train_epoch(batches, metrics_log, started)
                    if not stop:
                        s.epoch += 1
                        s.batch_in_epoch = 0
                        if not settings.validate_every and \
                                s.epoch % settings.validate_every_epochs == 0:
                            stop = self._validate_and_log(metrics_log, started)
                if not s.stop_reason:
                    s.stop_reason = f"reached max_epochs={settings.max_epochs}"
                if s.validated_step != s.step:
                    self._validate_and_log(metrics_log, started, final=True)
                if self._signals.received is not None:  # during the last validation: no test
                    self._interrupt()
                self.save_last()
            finally:
                self._started = None
                if metrics_log is not None:
                    metrics_log.close()
                    try:  # a chart must not hide why the run stopped, nor its exit status
                        plot_learning_curve(metrics_log.path, self.run_dir / "learning_curve.png",
                                            settings.early_stopping_metric)
                    except Exception as err:
                        log.warning("learning curve not drawn: %s: %s", type(err).__name__, err)
        log.info("Training stopped (%s) after %d steps; best validation %s %.4g at step %d",
                 s.stop_reason, s.step, settings.early_stopping_metric,
                 s.best_metrics.get(settings.early_stopping_metric, math.nan), s.best_step)
        return s

    def _train_epoch(self, batches: Any, metrics_log: Optional[MetricsLog], started: float) -> bool:
        """Train on the rest of the current epoch's batches; whether the run should stop."""
        s, settings = self.state, self.settings
        show_bar = settings.progress_bar and self.dist.is_main
        bar = tqdm(total=batches.num_batches(s.epoch), initial=s.batch_in_epoch,
                   desc=f"epoch {s.epoch + 1}", leave=False, disable=None if show_bar else True)
        stop = False
        for group in groups_of(batches.epoch(s.epoch, start=s.batch_in_epoch),
                             settings.accumulate_batches):
            t0 = time.perf_counter()
            flags = (self._signals.received is not None,
                     self._past_budget(time.perf_counter() - started))
            loss, tokens, (signalled, over_time) = self.train_step(
                group, flags=flags, elapsed_seconds=time.perf_counter() - started)
            elapsed = time.perf_counter() - t0
            s.step += 1
            s.batch_in_epoch += len(group)
            rebalance_threads()  # runs started or ended beside this one (seq2seq/runtime.py)
            if s.count_update(loss, self.grad_norm, settings.max_nonfinite, self.checkpoints.last,
                              scaler_backoff=self.update.scaler_backed_off()):
                s.train_seconds += elapsed
                s.train_tokens += tokens
                self._window.add(loss, tokens, elapsed, self.grad_norm)
                if metrics_log is not None:  # every update: vanishing or exploding gradients
                    metrics_log.scalar("train/grad_norm", self.grad_norm, s.step)
            lr = self.optimizer.param_groups[0]["lr"]
            bar.update(len(group))
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2g}", tok_s=f"{self._window.rate:.0f}")
            if s.step % settings.log_every == 0 and self._window.steps and metrics_log is not None:
                metrics_log.write(step=s.step, epoch=s.epoch + 1, split="train",
                                  loss=self._window.loss, lr=lr,
                                  tokens_per_second=self._window.rate,
                                  grad_norm=self._window.grad_norm,
                                  grad_norm_max=self._window.grad_norm_max,
                                  teacher_forcing=settings.teacher_forcing.ratio(s.step),
                                  elapsed_seconds=time.perf_counter() - started)
                self._window = LogWindow()
            if settings.validate_every and s.step % settings.validate_every == 0:
                stop = self._validate_and_log(metrics_log, started)
            if signalled:
                self._interrupt()
            stop = stop or self._out_of_budget(over_time)
            if stop:
                break
        bar.close()
        return stop

    def _past_budget(self, elapsed_seconds: float) -> bool:
        minutes = self.settings.max_minutes
        return minutes is not None and elapsed_seconds >= 60 * minutes

    def _out_of_budget(self, over_time: bool) -> bool:
        """Whether to stop; ``over_time`` is a verdict on the time budget that every rank shares
        (any rank's, carried by a step, or rank 0's clock), so that all ranks stop together."""
        s, settings = self.state, self.settings
        if settings.max_steps is not None and s.step >= settings.max_steps:
            s.stop_reason = f"reached max_steps={settings.max_steps}"
        elif over_time:
            s.stop_reason = f"reached max_minutes={settings.max_minutes}"
        return bool(s.stop_reason)

    def _interrupt(self) -> None:
        """Save last.pt and raise TrainingInterrupted (on every rank: one of them got a signal)."""
        signum = self._signals.received or signal.SIGTERM  # another rank got it
        name = signal.Signals(signum).name
        self.state.stop_reason = f"interrupted by {name}"
        path = self.save_last()
        raise TrainingInterrupted(
            f"{name} received: stopped after step {self.state.step} and saved {path}. Resume "
            f"with: seq2seq-train (or python scripts/train.py) <the same overrides> resume=true "
            f"hydra.run.dir={self.run_dir}", signum)
