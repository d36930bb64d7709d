"""LR schedules (conf/trainer/schedule): each YAML builds its class, each rule equals its
definition, the plateau equals torch's ReduceLROnPlateau, a resumed run sets the same LRs as an
unbroken one, and the resets, value clipping, the gradient-norm log, early stopping and
TensorBoard do what they say."""

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from seq2seq.config import build
from seq2seq.errors import ConfigError
from seq2seq.training import lr_schedules
from seq2seq.training.gradients import scale_and_clip
from seq2seq.training.lr_schedules import Clock
from seq2seq.training.metrics_log import read_metrics
from seq2seq.training.trainer import Trainer
from tests.conftest import compose_train

SCHEDULES = {"plateau": lr_schedules.Plateau, "constant": lr_schedules.Constant,
             "inverse_sqrt": lr_schedules.InverseSqrt, "cosine": lr_schedules.Cosine,
             "step": lr_schedules.StepDecay}


def trainer_settings(schedule_name: str = "plateau", **overrides):
    cfg = compose_train(["trainer=default", f"trainer/schedule={schedule_name}",
                         "trainer.progress_bar=false"])
    for key, value in overrides.items():
        OmegaConf.update(cfg, f"trainer.{key}", value, merge=True)
    return build(cfg.trainer)


def clock(update, seconds=0.0, total=None, budget=None):
    return Clock(update=update, seconds=seconds, total_updates=total, budget_seconds=budget)


@pytest.mark.parametrize("name", SCHEDULES)
def test_each_yaml_file_builds_its_class(name):
    schedule = trainer_settings(name).schedule
    assert type(schedule) is SCHEDULES[name] and schedule.name == name


def test_warmup_rises_linearly_to_the_lr_before_any_schedule():
    cosine = lr_schedules.Cosine(warmup_steps=4, over="steps", length=None)
    rates = [cosine.lr(1.0, 0.0, clock(u, total=104)) for u in range(1, 6)]
    assert rates == [0.25, 0.5, 0.75, 1.0, pytest.approx(0.5 * (1 + math.cos(math.pi / 100)))]


def test_inverse_sqrt_is_the_noam_shape_with_its_peak_at_the_lr():
    noam = lr_schedules.InverseSqrt(warmup_steps=100)
    assert noam.lr(2.0, 0.0, clock(50)) == 1.0
    assert noam.lr(2.0, 0.0, clock(100)) == 2.0
    assert noam.lr(2.0, 0.0, clock(400)) == pytest.approx(1.0)   # 2 * sqrt(100 / 400)
    assert noam.lr(2.0, 0.9, clock(10_000)) == 0.9               # min_lr
    with pytest.raises(ConfigError, match="trainer.schedule.warmup_steps=0"):
        lr_schedules.InverseSqrt(warmup_steps=0)


def test_cosine_over_steps_and_over_the_time_budget():
    steps = lr_schedules.Cosine(warmup_steps=0, over="steps", length=None)
    assert steps.lr(1.0, 0.1, clock(0, total=100)) == pytest.approx(1.0)
    assert steps.lr(1.0, 0.1, clock(50, total=100)) == pytest.approx(0.55)
    assert steps.lr(1.0, 0.1, clock(100, total=100)) == pytest.approx(0.1)
    assert steps.lr(1.0, 0.1, clock(150, total=100)) == pytest.approx(0.1)  # stays at the end
    minutes = lr_schedules.Cosine(warmup_steps=0, over="minutes", length=None)
    # the same update number, a different time: the clock decides
    assert minutes.lr(1.0, 0.0, clock(7, seconds=150, budget=600)) == pytest.approx(
        0.5 * (1 + math.cos(math.pi / 4)))
    assert minutes.lr(1.0, 0.0, clock(7, seconds=600, budget=600)) == pytest.approx(0.0)
    fixed = lr_schedules.Cosine(warmup_steps=0, over="minutes", length=5)
    assert fixed.lr(1.0, 0.0, clock(1, seconds=150, budget=None)) == pytest.approx(0.5)


def test_a_cosine_over_minutes_needs_a_time_budget():
    with pytest.raises(ConfigError, match="trainer.schedule.over=minutes .* trainer.max_minutes"):
        trainer_settings("cosine", schedule={"over": "minutes"})
    assert trainer_settings("cosine", schedule={"over": "minutes"}, max_minutes=30).schedule


def test_step_decay_drops_every_step_size_updates():
    step = lr_schedules.StepDecay(warmup_steps=2, step_size=3, gamma=0.5)
    rates = [step.lr(1.0, 0.2, clock(u)) for u in range(1, 13)]
    assert rates == [0.5, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2]


@pytest.mark.parametrize("lower_is_better", [True, False])
def test_the_plateau_equals_torchs_reduce_lr_on_plateau(lower_is_better):
    figures = [5.0, 4.0, 4.0, 4.1, 3.9, 3.9, 3.9, 3.9, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]
    figures = figures if lower_is_better else [-f for f in figures]
    ours = lr_schedules.Plateau(warmup_steps=0, factor=0.5, patience=1)
    ours.lower_is_better = lower_is_better
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min" if lower_is_better else "max", factor=0.5, patience=1, min_lr=0.05)
    for value in figures:
        ours.after_validation(value)
        theirs.step(value)
        assert ours.lr(1.0, 0.05, clock(10)) == pytest.approx(optimizer.param_groups[0]["lr"])


class Steps:
    """Three one-token batches per epoch."""

    def num_batches(self, epoch):
        return 3

    def epoch(self, epoch, start=0):
        return iter([SimpleNamespace(num_tgt_tokens=1)] * (3 - start))


class Figures:
    """Validation figures that get worse from the third validation on (BLEU falls)."""

    metrics = ("loss", "bleu")

    def __init__(self, worse_after=2):
        self.validations = 0
        self.worse_after = worse_after

    def loss(self, model, batch, teacher_forcing, smoothing):
        return (model.weight ** 2).sum() + model.bias.sum()

    def validate(self, model):
        self.validations += 1
        bleu = 10.0 + min(self.validations, self.worse_after) - max(
            self.validations - self.worse_after, 0)
        return {"loss": 1.0 / self.validations, "bleu": bleu}

    def checkpoint_extras(self):
        return {}


def train_rates(tmp_path, settings, figures=None, resume=False):
    tmp_path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    trainer = Trainer(settings, nn.Linear(2, 1), figures or Figures(), tmp_path, {"trainer": {
        "lr": settings.lr}})
    if resume:
        trainer.resume(tmp_path / "checkpoints" / "last.pt")
    state = trainer.fit(Steps())
    rows = read_metrics(tmp_path / "metrics.csv")
    return state, trainer, [float(r["lr"]) for r in rows if r["split"] == "train"], rows


@pytest.mark.parametrize("name,schedule", [
    ("plateau", {"warmup_steps": 2, "patience": 0}),
    ("constant", {"warmup_steps": 4}),
    ("inverse_sqrt", {"warmup_steps": 3}),
    ("cosine", {"warmup_steps": 2, "length": 18}),  # the first part stops at 9 of the 18
    ("step", {"warmup_steps": 1, "step_size": 4, "gamma": 0.5}),
])
def test_a_resumed_run_sets_the_same_lrs_as_an_unbroken_one(tmp_path, name, schedule):
    common = {"schedule": schedule, "lr": 1.0, "min_lr": 0.01, "log_every": 1,
              "early_stopping_patience": 100}
    _, _, unbroken, _ = train_rates(tmp_path / "unbroken", trainer_settings(
        name, max_epochs=6, **common))
    first, _, part, _ = train_rates(tmp_path / "broken", trainer_settings(
        name, max_epochs=3, **common))
    # the second part must know the whole run's length, as the unbroken run did
    _, _, rest, _ = train_rates(tmp_path / "broken", trainer_settings(
        name, max_epochs=6, **common), resume=True)
    assert len(unbroken) == 18 and first.step == 9
    assert rest == unbroken  # the CSV goes on: both parts' rows
    assert len(set(unbroken)) > 2  # the schedule moved the LR


def test_reset_schedule_restarts_the_warmup_and_reset_optimizer_drops_adams_moments(tmp_path):
    common = {"schedule": {"warmup_steps": 3}, "lr": 1.0, "log_every": 1,
              "early_stopping_patience": 100}
    train_rates(tmp_path, trainer_settings("constant", max_epochs=2, **common))
    settings = trainer_settings("constant", max_epochs=3, reset_schedule=True,
                                reset_optimizer=True, **common)
    trainer = Trainer(settings, nn.Linear(2, 1), Figures(), tmp_path, {"trainer": {"lr": 1.0}})
    trainer.resume(tmp_path / "checkpoints" / "last.pt")
    assert not trainer.optimizer.state  # fresh Adam
    assert trainer.state.step == 6 and trainer.state.schedule_from_step == 6
    trainer.fit(Steps())
    rates = [float(r["lr"]) for r in read_metrics(tmp_path / "metrics.csv") if r["split"] == "train"]
    warmup = [pytest.approx(1 / 3), pytest.approx(2 / 3), 1.0]
    assert rates == warmup + [1.0] * 3 + warmup


@pytest.mark.parametrize("clip_norm", [0.0, 0.05])
def test_clipping_by_value_equals_torchs_clip_grad_value(clip_norm):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Linear(7, 3))
    twin = copy.deepcopy(model)
    x = torch.randn(4, 5)
    for m in (model, twin):
        (m(x) * 10).pow(2).sum().backward()
    norm = scale_and_clip(model.parameters(), 1 / 3, clip_norm, clip_value=0.1)
    for p in twin.parameters():
        p.grad.div_(3)
    expected_norm = float(nn.utils.get_total_norm([p.grad for p in twin.parameters()]))
    nn.utils.clip_grad_value_(twin.parameters(), 0.1)
    if clip_norm:
        nn.utils.clip_grad_norm_(twin.parameters(), clip_norm)
    for ours, theirs in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(ours.grad, theirs.grad)
    assert norm == pytest.approx(expected_norm)  # the norm before any clipping
    assert max(float(p.grad.abs().max()) for p in model.parameters()) <= 0.1 + 1e-7


def test_the_gradient_norm_is_logged_with_the_training_rows(tmp_path):
    settings = trainer_settings("constant", max_epochs=2, log_every=2)
    _, trainer, _, rows = train_rates(tmp_path, settings)
    train = [r for r in rows if r["split"] == "train"]
    assert [int(r["step"]) for r in train] == [2, 4, 6]
    for row in train:
        assert 0 < float(row["grad_norm"]) <= float(row["grad_norm_max"])
    assert float(train[-1]["grad_norm_max"]) >= trainer.grad_norm > 0


def test_early_stopping_stops_a_run(tmp_path):
    settings = trainer_settings("plateau", max_epochs=50, early_stopping_patience=3)
    figures = Figures(worse_after=2)
    state, _, _, rows = train_rates(tmp_path, settings, figures)
    # best at validation 2; validations 3, 4 and 5 are worse: stop after epoch 5 of 50
    assert state.stop_reason.startswith("early stopping") and figures.validations == 5
    assert state.step == 15 and state.best_step == 6
    assert [int(r["step"]) for r in rows if r["split"] == "valid"] == [3, 6, 9, 12, 15]


def test_tensorboard_gets_every_updates_gradient_norm_and_the_validation(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train_rates(tmp_path, trainer_settings("constant", max_epochs=2, log_every=3))
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/grad_norm", "train/loss", "train/lr", "valid/bleu", "valid/loss"} <= set(tags)
    assert [e.step for e in events.Scalars("train/grad_norm")] == [1, 2, 3, 4, 5, 6]
    assert [e.step for e in events.Scalars("valid/bleu")] == [3, 6]


def test_the_old_plateau_keys_still_set_the_plateau():
    plateau = trainer_settings("plateau", lr_patience=3, lr_decay_factor=0.25).schedule
    assert (plateau.factor, plateau.patience) == (0.25, 3)
    with pytest.raises(ConfigError, match="trainer.lr_patience is the plateau schedule's"):
        trainer_settings("cosine", lr_patience=2)
    with pytest.raises(ConfigError, match="trainer.schedule.factor=2"):
        trainer_settings("plateau", lr_decay_factor=2)
