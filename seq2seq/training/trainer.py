"""The training loop: Adam, gradient clipping, LR decay on plateau, validation BLEU, early stopping,
checkpoints ``best.pt`` and ``last.pt``, metrics and a progress bar."""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from seq2seq.data.batching import Batch, ParallelBatches, make_batch
from seq2seq.errors import check_choice, check_range
from seq2seq.evaluation.bleu import score_corpus
from seq2seq.tokenization import PAD, TokenizerPair
from seq2seq.training.checkpoint import load_checkpoint, save_checkpoint
from seq2seq.training.metrics_log import MetricsLog, plot_learning_curve
from seq2seq.training.schedules import TeacherForcingSchedule
from seq2seq.translate import SearchSettings, translate_ids

log = logging.getLogger(__name__)


@dataclass
class TrainerSettings:
    """The `trainer` config group."""

    max_epochs: int = 20
    max_steps: Optional[int] = None
    max_minutes: Optional[float] = None     # stop (and keep the best checkpoint) after this long
    batch_tokens: int = 4000                # padded tokens per batch (sentences x longest side)
    max_sentences: Optional[int] = None
    lr: float = 1e-3
    clip_norm: float = 1.0
    label_smoothing: float = 0.0
    lr_decay_factor: float = 0.5            # ReduceLROnPlateau on the validation metric
    lr_patience: int = 2
    min_lr: float = 1e-5
    validate_every: int = 0                 # steps between validations; 0 = after every epoch
    valid_beam: int = 1
    valid_max_sentences: Optional[int] = None
    early_stopping_metric: str = "bleu"     # bleu (higher is better) or loss
    early_stopping_patience: int = 5        # validations without improvement before stopping
    log_every: int = 50
    progress_bar: bool = True
    teacher_forcing: TeacherForcingSchedule = field(default_factory=TeacherForcingSchedule)

    def __post_init__(self) -> None:
        check_range("trainer.max_epochs", self.max_epochs, 1)
        check_range("trainer.batch_tokens", self.batch_tokens, 1)
        check_range("trainer.lr", self.lr, 0.0)
        check_range("trainer.label_smoothing", self.label_smoothing, 0.0, 1.0)
        check_range("trainer.valid_beam", self.valid_beam, 1)
        check_range("trainer.validate_every", self.validate_every, 0)
        check_choice("trainer.early_stopping_metric", self.early_stopping_metric, ("bleu", "loss"))


@dataclass
class TrainState:
    """Counters saved in ``last.pt``, so a resumed run continues exactly where it stopped."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_metric: float = -math.inf
    best_step: int = 0
    best_bleu: float = 0.0
    bad_validations: int = 0
    train_seconds: float = 0.0
    train_tokens: int = 0
    validated_step: int = -1
    stop_reason: str = ""


@dataclass
class ValidationData:
    src_ids: list[list[int]]
    tgt_ids: list[list[int]]
    references: list[str]


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])


class Trainer:
    """Trains a model on ``ParallelBatches`` and validates it on held-out sentences."""

    def __init__(self, settings: TrainerSettings, model: nn.Module, tokenizers: TokenizerPair,
                 run_dir: str | Path, config: dict, search: SearchSettings) -> None:
        self.settings, self.model, self.tokenizers = settings, model, tokenizers
        self.run_dir, self.config = Path(run_dir), config
        self.valid_search = SearchSettings(**{**search.__dict__, "beam": settings.valid_beam})
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
        mode = "max" if settings.early_stopping_metric == "bleu" else "min"
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode=mode, factor=settings.lr_decay_factor,
            patience=settings.lr_patience, min_lr=settings.min_lr)
        self.state = TrainState()

    # -- checkpoints ---------------------------------------------------------------------------
    def _payload(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "trainer": asdict(self.state),
                "config": self.config, "tokenizers": self.tokenizers.state_dict(),
                "rng": rng_state()}

    def save(self, name: str) -> Path:
        path = self.checkpoint_dir / name
        save_checkpoint(path, self._payload())
        return path

    def resume(self, path: str | Path) -> None:
        """Restore model, optimizer, scheduler, counters and RNG states from a checkpoint."""
        payload = load_checkpoint(path)
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.state = TrainState(**payload["trainer"])
        set_rng_state(payload["rng"])
        log.info("Resumed from %s at step %d (epoch %d, batch %d)", path, self.state.step,
                 self.state.epoch, self.state.batch_in_epoch)

    # -- one step ------------------------------------------------------------------------------
    def loss(self, batch: Batch, teacher_forcing: float, smoothing: float) -> torch.Tensor:
        """Summed cross-entropy over the batch's target tokens."""
        logits = self.model(batch.src, batch.src_len, batch.tgt_in, teacher_forcing).logits
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch.tgt_out.reshape(-1),
                               ignore_index=PAD, reduction="sum", label_smoothing=smoothing)

    def train_step(self, batch: Batch) -> float:
        self.model.train()
        ratio = self.settings.teacher_forcing.ratio(self.state.step)
        tokens = batch.num_tgt_tokens
        loss = self.loss(batch, ratio, self.settings.label_smoothing) / tokens
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.settings.clip_norm > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.clip_norm)
        self.optimizer.step()
        return float(loss.detach())

    # -- validation ----------------------------------------------------------------------------
    def validate(self, valid: ValidationData) -> dict[str, float]:
        """Teacher-forced loss (no smoothing) and BLEU of searched translations."""
        self.model.eval()
        total, tokens = 0.0, 0
        with torch.inference_mode():
            for start in range(0, len(valid.src_ids), 64):
                ids = range(start, min(start + 64, len(valid.src_ids)))
                batch = make_batch([valid.src_ids[i] for i in ids],
                                   [valid.tgt_ids[i] for i in ids], list(ids))
                total += float(self.loss(batch, 1.0, 0.0))
                tokens += batch.num_tgt_tokens
        hyps = translate_ids(self.model, valid.src_ids, self.valid_search)
        texts = self.tokenizers.tgt.decode([h.tokens for h in hyps])
        scores = score_corpus(texts, valid.references)
        loss = total / max(tokens, 1)
        return {"loss": loss, "ppl": math.exp(min(loss, 50.0)), "bleu": scores.bleu,
                "chrf": scores.chrf}

    def _after_validation(self, metrics: dict[str, float]) -> bool:
        """Track the best model, decay the LR, and say whether to stop early."""
        s, settings = self.state, self.settings
        higher = settings.early_stopping_metric == "bleu"
        value = metrics[settings.early_stopping_metric]
        self.scheduler.step(value)
        score = value if higher else -value
        if score > s.best_metric:
            s.best_metric, s.best_step, s.best_bleu, s.bad_validations = score, s.step, metrics["bleu"], 0
            self.save("best.pt")
        else:
            s.bad_validations += 1
        self.save("last.pt")
        if s.bad_validations >= settings.early_stopping_patience:
            s.stop_reason = (f"early stopping: no better validation {settings.early_stopping_metric} "
                             f"in {s.bad_validations} validations")
            return True
        return False

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, batches: ParallelBatches, valid: ValidationData) -> TrainState:
        """Train until max_epochs/max_steps/max_minutes or early stopping; return the counters."""
        settings, s = self.settings, self.state
        metrics_log = MetricsLog(self.run_dir)
        started = time.perf_counter() - s.train_seconds
        window_tokens, window_seconds, window_loss, window_steps = 0, 0.0, 0.0, 0
        stop = False
        try:
            while s.epoch < settings.max_epochs and not stop:
                total = batches.num_batches(s.epoch)
                bar = tqdm(total=total, initial=s.batch_in_epoch, desc=f"epoch {s.epoch + 1}",
                           disable=None if settings.progress_bar else True, leave=False)
                for batch in batches.epoch(s.epoch, start=s.batch_in_epoch):
                    t0 = time.perf_counter()
                    loss = self.train_step(batch)
                    elapsed = time.perf_counter() - t0
                    if not math.isfinite(loss):
                        raise FloatingPointError(f"training loss is {loss} at step {s.step + 1}")
                    s.step += 1
                    s.batch_in_epoch += 1
                    s.train_seconds += elapsed
                    s.train_tokens += batch.num_tgt_tokens
                    window_tokens += batch.num_tgt_tokens
                    window_seconds += elapsed
                    window_loss += loss
                    window_steps += 1
                    lr = self.optimizer.param_groups[0]["lr"]
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2g}",
                                    tok_s=f"{window_tokens / max(window_seconds, 1e-9):.0f}")
                    if s.step % settings.log_every == 0:
                        metrics_log.write(step=s.step, epoch=s.epoch + 1, split="train",
                                          loss=window_loss / window_steps, lr=lr,
                                          teacher_forcing=settings.teacher_forcing.ratio(s.step),
                                          tokens_per_second=window_tokens / window_seconds,
                                          elapsed_seconds=time.perf_counter() - started)
                        window_tokens, window_seconds, window_loss, window_steps = 0, 0.0, 0.0, 0
                    if settings.validate_every and s.step % settings.validate_every == 0:
                        stop = self._validate_and_log(valid, metrics_log, started)
                    stop = stop or self._out_of_budget(started)
                    if stop:
                        break
                bar.close()
                if not stop:
                    s.epoch += 1
                    s.batch_in_epoch = 0
                    if not settings.validate_every:
                        stop = self._validate_and_log(valid, metrics_log, started)
            if not s.stop_reason:
                s.stop_reason = f"reached max_epochs={settings.max_epochs}"
            if s.validated_step != s.step:
                # The last steps since the last validation have not been scored yet.
                self._validate_and_log(valid, metrics_log, started)
            self.save("last.pt")
        finally:
            metrics_log.close()
            plot_learning_curve(metrics_log.path, self.run_dir / "learning_curve.png")
        log.info("Training stopped (%s) after %d steps; best validation BLEU %.2f at step %d",
                 s.stop_reason, s.step, s.best_bleu, s.best_step)
        return s

    def _validate_and_log(self, valid: ValidationData, metrics_log: MetricsLog,
                          started: float) -> bool:
        metrics = self.validate(valid)
        self.state.validated_step = self.state.step
        lr = self.optimizer.param_groups[0]["lr"]
        metrics_log.write(step=self.state.step, epoch=self.state.epoch, split="valid", lr=lr,
                          elapsed_seconds=time.perf_counter() - started, **metrics)
        log.info("step %d: valid loss %.3f ppl %.2f BLEU %.2f chrF %.2f (lr %.2g)", self.state.step,
                 metrics["loss"], metrics["ppl"], metrics["bleu"], metrics["chrf"], lr)
        return self._after_validation(metrics)

    def _out_of_budget(self, started: float) -> bool:
        s, settings = self.state, self.settings
        if settings.max_steps is not None and s.step >= settings.max_steps:
            s.stop_reason = f"reached max_steps={settings.max_steps}"
        elif settings.max_minutes is not None and \
                time.perf_counter() - started >= 60 * settings.max_minutes:
            s.stop_reason = f"reached max_minutes={settings.max_minutes}"
        return bool(s.stop_reason)
