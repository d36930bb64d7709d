"""Trainer units: the LR plateau watches ``trainer.lr_metric`` (early stopping keeps its own
metric); gradients are scaled per token and clipped as ``clip_grad_norm_`` would."""

import copy
import math
import os
import signal
import time
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from seq2seq.errors import ConfigError
from seq2seq.training.gradients import scale_and_clip
from seq2seq.training.metrics_log import read_metrics
from seq2seq.training.signals import StopSignals
from seq2seq.training.state import NonFiniteLoss, TrainingInterrupted
from seq2seq.training.trainer import Trainer
from tests.conftest import group_settings


class FixedFigures:
    """An objective whose validation returns whatever the test queues."""

    metrics = ("loss", "bleu")

    def __init__(self, figures):
        self.figures = list(figures)

    def loss(self, model, batch, teacher_forcing, smoothing):
        return model.weight.sum()

    def validate(self, model):
        return self.figures.pop(0)

    def checkpoint_extras(self):
        return {}


# Validation loss keeps falling while greedy BLEU wobbles down: a plateau only in BLEU.
WOBBLE = [{"loss": 3.0 - 0.1 * i, "bleu": 20.0 - i} for i in range(4)]


def learning_rates(tmp_path, **settings):
    objective = FixedFigures(WOBBLE)
    trainer = Trainer(group_settings("trainer", "default", lr=1.0, schedule={"patience": 1},
                                     early_stopping_patience=10, **settings),
                      torch.nn.Linear(2, 1), objective, tmp_path, {})
    rates = []
    for _ in WOBBLE:
        trainer._after_validation(trainer.validate(), final=False)
        rates.append(trainer.optimizer.param_groups[0]["lr"])
    return trainer, rates


def test_the_plateau_watches_the_early_stopping_metric_by_default(tmp_path):
    _, rates = learning_rates(tmp_path)
    assert rates == [1.0, 1.0, 0.5, 0.5]


def test_lr_metric_loss_keeps_the_lr_while_the_loss_falls(tmp_path):
    trainer, rates = learning_rates(tmp_path, lr_metric="loss")
    assert rates == [1.0] * 4
    assert trainer.state.best_step == 0 and trainer.state.bad_validations == 3  # BLEU still decides


def test_an_unknown_lr_metric_names_the_option(tmp_path):
    trainer = Trainer(group_settings("trainer", "default", lr_metric="accuracy"),
                      torch.nn.Linear(2, 1), FixedFigures(WOBBLE), tmp_path, {})
    with pytest.raises(ConfigError, match="trainer.lr_metric=accuracy .* choose from bleu, loss"):
        trainer.validate()


@pytest.mark.parametrize("clip", [0.0, 1.0, 1e-3])  # off, rarely active, always active
def test_one_pass_scaling_and_clipping_matches_torch(tmp_path, clip):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Linear(7, 3))
    twin = copy.deepcopy(model)
    x = torch.randn(4, 5)
    for m in (model, twin):
        m(x).pow(2).sum().backward()
    norm = scale_and_clip(model.parameters(), 1 / 13, clip)
    for p in twin.parameters():
        p.grad.div_(13)
    expected = float(nn.utils.get_total_norm([p.grad for p in twin.parameters()]))
    if clip:
        nn.utils.clip_grad_norm_(twin.parameters(), clip)
    for ours, theirs in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(ours.grad, theirs.grad)
    assert norm == pytest.approx(expected)  # of the scaled gradients, before clipping


class InfiniteGradient(torch.autograd.Function):
    """A finite loss whose backward pass overflows."""

    @staticmethod
    def forward(ctx, weight):
        return weight.sum()

    @staticmethod
    def backward(ctx, grad):
        return torch.full((1, 2), float("inf"))


class OverflowingObjective(FixedFigures):
    def loss(self, model, batch, teacher_forcing, smoothing):
        return InfiniteGradient.apply(model.weight)


@pytest.mark.parametrize("clip", [1.0, 0.0])
def test_a_finite_loss_with_an_infinite_gradient_skips_the_update(tmp_path, clip):
    """A clip factor of 0 times inf would put NaN into Adam's state for good; without clipping
    nothing would look at the gradient at all. The update is skipped, and counted as a
    non-finite loss is."""
    model = torch.nn.Linear(2, 1)
    before = copy.deepcopy(model.state_dict())
    trainer = Trainer(group_settings("trainer", "default", clip_norm=clip), model,
                      OverflowingObjective([]), tmp_path, {})
    loss, tokens, _ = trainer.train_step([SimpleNamespace(num_tgt_tokens=3)])
    assert math.isfinite(loss) and trainer.grad_norm == float("inf")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not trainer.optimizer.state  # Adam never saw the gradient
    last = tmp_path / "last.pt"
    assert not trainer.state.count_update(loss, trainer.grad_norm, 5, last)
    assert trainer.state.nonfinite_total == 1


def test_resuming_with_another_lr_metric_starts_the_plateau_afresh(tmp_path):
    trainer, rates = learning_rates(tmp_path)  # the plateau on BLEU halved the LR once
    trainer.config = {"trainer": {"lr_metric": None, "early_stopping_metric": "bleu"}}
    trainer.save_last()
    resumed = Trainer(group_settings("trainer", "default", lr=1.0, schedule={"patience": 1},
                                     lr_metric="loss"),
                      torch.nn.Linear(2, 1), FixedFigures([]), tmp_path, {})
    resumed.resume(tmp_path / "checkpoints" / "last.pt")
    assert resumed.optimizer.param_groups[0]["lr"] == rates[-1] == 0.5
    assert resumed.schedule.lower_is_better and resumed.schedule.best is None
    same = Trainer(group_settings("trainer", "default", lr=1.0, schedule={"patience": 1}),
                   torch.nn.Linear(2, 1), FixedFigures([]), tmp_path, {})
    same.resume(tmp_path / "checkpoints" / "last.pt")
    assert not same.schedule.lower_is_better and same.schedule.best == 20.0  # its memory kept
    assert same.optimizer.param_groups[0]["lr"] == 0.5


def test_the_budgets_last_minutes_anneal_the_lr_linearly_instead_of_the_plateau(tmp_path):
    # A 10-minute budget whose last 4 minutes anneal; BLEU falls at every validation, so the
    # plateau (patience 0) halves the LR each time it is in charge.
    settings = group_settings("trainer", "default", lr=1.0, schedule={"patience": 0}, min_lr=0.01,
                              max_minutes=10, lr_anneal_minutes=4, early_stopping_patience=10)
    trainer = Trainer(settings, nn.Linear(2, 1), FixedFigures(WOBBLE), tmp_path, {})
    rates = []
    for minutes in (3, 5, 7, 10):
        trainer._after_validation(trainer.validate(), final=False, elapsed_seconds=60 * minutes)
        rates.append(trainer.optimizer.param_groups[0]["lr"])
    # 3 min: best so far; 5 min: the plateau halves; 7 min (3 of 4 minutes left): 0.5 * 3/4,
    # where the plateau would have halved again; 10 min: min_lr.
    assert rates == [1.0, 0.5, 0.375, 0.01]
    assert trainer.state.anneal_from_lr == 0.5  # saved in last.pt: a resumed run goes on alike


@pytest.mark.parametrize("max_minutes", [None, 4])
def test_annealing_needs_a_longer_time_budget(max_minutes):
    with pytest.raises(ConfigError, match="trainer.lr_anneal_minutes=5 .* trainer.max_minutes"):
        group_settings("trainer", "default", max_minutes=max_minutes, lr_anneal_minutes=5)


class _Steps:
    """Three one-token batches per epoch."""

    def num_batches(self, epoch):
        return 3

    def epoch(self, epoch, start=0):
        return iter([SimpleNamespace(num_tgt_tokens=1)] * (3 - start))


class _SlowFigures(FixedFigures):
    validations = 0

    def validate(self, model):
        self.validations += 1
        time.sleep(0.3)
        return {"loss": 1.0, "bleu": 1.0}


def test_the_time_budget_counts_validation_and_goes_on_over_a_resume(tmp_path):
    trainer = Trainer(group_settings("trainer", "default", max_epochs=2, progress_bar=False),
                      nn.Linear(2, 1), _SlowFigures([]), tmp_path, {})
    state = trainer.fit(_Steps())
    assert state.step == 6 and state.wall_seconds >= 0.6 > state.train_seconds
    # Resumed under a budget of 0.5 s, which the first part's validations used up: no step,
    # where a clock of training steps alone would have allowed the whole of epochs 3 and 4.
    resumed = Trainer(group_settings("trainer", "default", max_epochs=4, max_minutes=0.5 / 60,
                                     progress_bar=False),
                      nn.Linear(2, 1), _SlowFigures([]), tmp_path, {})
    resumed.resume(tmp_path / "checkpoints" / "last.pt")
    state = resumed.fit(_Steps())
    assert state.step == 6 and "max_minutes" in state.stop_reason


def test_a_budget_spent_during_a_validation_stops_the_run_there(tmp_path):
    # Validations take 0.3 s and the budget is 0.5 s: the second epoch's validation spends it.
    # The run stops after it, not after one more step and a third validation of nearly the
    # same weights (a near-duplicate checkpoint in the average of the last few).
    figures = _SlowFigures([])
    trainer = Trainer(group_settings("trainer", "default", max_epochs=4, max_minutes=0.5 / 60,
                                     progress_bar=False),
                      nn.Linear(2, 1), figures, tmp_path, {})
    state = trainer.fit(_Steps())
    assert (state.step, state.epoch, figures.validations) == (6, 2, 2)
    assert "max_minutes" in state.stop_reason and state.validated_step == 6


def test_validate_every_epochs_validates_after_every_nth_epoch_and_the_last_step(tmp_path):
    figures = _SlowFigures([])
    figures.validate = lambda model: {"loss": 1.0, "bleu": 1.0}  # no sleep
    trainer = Trainer(group_settings("trainer", "default", max_epochs=5, validate_every_epochs=2,
                                     progress_bar=False),
                      nn.Linear(2, 1), figures, tmp_path, {})
    state = trainer.fit(_Steps())
    valid_steps = [int(row["step"]) for row in read_metrics(tmp_path / "metrics.csv")
                   if row["split"] == "valid"]
    assert state.step == 15 and valid_steps == [6, 12, 15]  # epochs 2 and 4, then the end


def test_validate_every_epochs_must_be_positive():
    with pytest.raises(ConfigError, match="trainer.validate_every_epochs"):
        group_settings("trainer", "default", validate_every_epochs=0)


def test_a_second_ctrl_c_stops_at_once_and_sigusr1_is_taken_as_sigterm():
    with pytest.raises(KeyboardInterrupt):
        with StopSignals() as signals:
            os.kill(os.getpid(), signal.SIGUSR1)  # a cluster's pre-emption warning
            assert signals.received == signal.SIGUSR1
            os.kill(os.getpid(), signal.SIGINT)  # a Ctrl-C after it: stop at once
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL  # the handlers are put back


class SignalledDuringValidation(FixedFigures):
    def validate(self, model):
        os.kill(os.getpid(), signal.SIGTERM)
        return {"loss": 1.0, "bleu": 1.0}


def test_a_signal_during_the_final_validation_stops_before_the_test_report(tmp_path):
    """The run must not go on to decode the test split after it was asked to stop."""
    settings = group_settings("trainer", "default", max_steps=1, progress_bar=False)
    trainer = Trainer(settings, nn.Linear(2, 1), SignalledDuringValidation([]), tmp_path, {})
    batches = SimpleNamespace(num_batches=lambda epoch: 1,
                              epoch=lambda epoch, start=0: iter([SimpleNamespace(num_tgt_tokens=2)]))
    with pytest.raises(TrainingInterrupted, match="SIGTERM received: stopped after step 1"):
        trainer.fit(batches)
    assert (tmp_path / "checkpoints" / "last.pt").is_file()


def test_a_failing_chart_does_not_hide_why_the_run_stopped(tmp_path, monkeypatch):
    def broken_plot(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("seq2seq.training.trainer.plot_learning_curve", broken_plot)
    settings = group_settings("trainer", "default", max_steps=1, progress_bar=False)
    trainer = Trainer(settings, nn.Linear(2, 1), SignalledDuringValidation([]), tmp_path, {})
    batches = SimpleNamespace(num_batches=lambda epoch: 1,
                              epoch=lambda epoch, start=0: iter([SimpleNamespace(num_tgt_tokens=2)]))
    with pytest.raises(TrainingInterrupted):  # the signal's error, not the chart's
        trainer.fit(batches)


def test_weights_that_are_not_finite_are_never_saved(tmp_path):
    model = nn.Linear(2, 1)
    trainer = Trainer(group_settings("trainer", "default"), model, FixedFigures([]), tmp_path, {})
    path = trainer.save_last()
    good = path.read_bytes()
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteLoss, match="step 0: the model's weights hold NaN or inf; they "
                                            "were not saved"):
        trainer.save_last()
    assert path.read_bytes() == good


def test_the_checkpoint_named_last_good_is_checked(tmp_path):
    """A last.pt with NaN weights (written by an older version) is not offered as good."""
    from seq2seq.training.checkpoint import save_checkpoint
    last = tmp_path / "last.pt"
    save_checkpoint(last, {"model": {"w": torch.tensor([float("nan")])}, "config": {}})
    state = Trainer(group_settings("trainer", "default"), nn.Linear(2, 1), FixedFigures([]),
                    tmp_path, {}).state
    with pytest.raises(NonFiniteLoss, match="last good checkpoint: none saved yet"):
        state.count_update(float("nan"), math.nan, 1, last)
    save_checkpoint(last, {"model": {"w": torch.tensor([1.0])}, "config": {}})
    with pytest.raises(NonFiniteLoss, match=f"last good checkpoint: {last}"):
        state.count_update(float("nan"), math.nan, 1, last)


def test_fp16_loss_scale_searches_do_not_count_as_nonfinite(tmp_path):
    """GradScaler skips the updates whose fp16 gradients overflow while it lowers its scale: those
    skips never stop a run; a non-finite loss still counts."""
    from seq2seq.training.step import MIN_SCALE, grad_scaler

    state = Trainer(group_settings("trainer", "default"), nn.Linear(2, 1), FixedFigures([]),
                    tmp_path, {}).state
    for _ in range(10):
        assert not state.count_update(1.0, math.inf, 2, tmp_path / "last.pt", scaler_backoff=True)
    assert state.nonfinite_in_a_row == 0
    with pytest.raises(NonFiniteLoss):
        for _ in range(2):
            state.count_update(math.nan, math.nan, 2, tmp_path / "last.pt", scaler_backoff=True)
    assert not grad_scaler("fp32", torch.device("cpu"), 4000).is_enabled()
    assert grad_scaler("fp16", torch.device("cpu"), 4000).get_scale() >= MIN_SCALE
