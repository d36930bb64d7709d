"""The moving average of the weights (``trainer.ema_decay``): its recurrence, the swap for
validation, and what best.pt / last.pt hold."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from seq2seq.errors import ConfigError
from seq2seq.training.checkpoint import load_checkpoint
from seq2seq.training.ema import WeightAverage
from seq2seq.training.trainer import Trainer
from tests.conftest import group_settings


class TiedModel(nn.Module):
    """Two names for one weight, as a decoder with tied embeddings has."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(5, 3)
        self.output = nn.Linear(3, 5, bias=False)
        self.output.weight = self.embedding.weight
        self.scale = nn.Linear(3, 1)


def test_the_average_follows_its_recurrence_with_warm_up():
    torch.manual_seed(0)
    model = TiedModel()
    average = WeightAverage(model, decay=0.9)
    expected = model.scale.weight.detach().clone()
    for n in range(1, 6):
        with torch.no_grad():
            model.scale.weight.add_(torch.randn_like(model.scale.weight))
        average.update()
        decay = min(0.9, (1 + n) / (10 + n))
        expected = decay * expected + (1 - decay) * model.scale.weight.detach()
    state = average.model_state(model)
    torch.testing.assert_close(state["scale.weight"], expected)
    assert torch.equal(state["embedding.weight"], state["output.weight"])
    assert not torch.equal(state["scale.weight"], model.scale.weight)  # the model keeps its own


def test_swapped_in_shows_the_average_and_restores_the_weights_even_on_error():
    model = TiedModel()
    own = {k: v.clone() for k, v in model.state_dict().items()}
    average = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    average.update()  # decay min(0.5, 2/11): the average moves 9/11 of the way
    moved = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError):
        with average.swapped_in():
            torch.testing.assert_close(model.scale.bias, own["scale.bias"] + 9 / 11)
            assert model.output.weight is model.embedding.weight  # still tied
            raise RuntimeError("validation failed")
    for name, value in model.state_dict().items():
        assert torch.equal(value, moved[name])


class Recorder:
    """Validates by reporting the model's weight, so the test sees which weights were validated."""

    metrics = ("loss",)

    def loss(self, model, batch, teacher_forcing, smoothing):
        return (model.weight - batch.target).pow(2).sum()

    def validate(self, model):
        return {"loss": float(model.weight.detach().sum())}

    def checkpoint_extras(self):
        return {}


def trainer_with_average(tmp_path, decay=0.5):
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    settings = group_settings("trainer", "default", lr=0.5, ema_decay=decay,
                              early_stopping_metric="loss")
    return Trainer(settings, model, Recorder(), tmp_path, {}), model


def test_the_trainer_validates_and_keeps_the_average_and_resumes_it(tmp_path):
    trainer, model = trainer_with_average(tmp_path)
    batch = SimpleNamespace(target=torch.ones(1, 1), num_tgt_tokens=1)
    for _ in range(3):
        trainer.train_step([batch])
    average = trainer.ema.model_state(model)["weight"]
    assert float(average) < float(model.weight.detach())  # it lags behind the rising weight
    metrics = trainer.validate()
    assert metrics["loss"] == pytest.approx(float(average))
    trainer._after_validation(metrics, final=False)
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    torch.testing.assert_close(best["model"]["weight"], average)     # the validated weights
    torch.testing.assert_close(last["model"]["weight"], model.weight.detach())  # to resume
    torch.testing.assert_close(last["ema"]["weights"]["weight"], average)
    assert "ema" not in best  # best.pt is for translating

    resumed, resumed_model = trainer_with_average(tmp_path)
    resumed.resume(tmp_path / "checkpoints" / "last.pt")
    torch.testing.assert_close(resumed_model.weight, model.weight)
    torch.testing.assert_close(resumed.ema.model_state(resumed_model)["weight"], average)
    assert resumed.ema.updates == 3


@pytest.mark.parametrize("decay", [-0.1, 1.0])
def test_a_decay_outside_zero_to_one_names_the_option(decay):
    with pytest.raises(ConfigError, match="trainer.ema_decay"):
        group_settings("trainer", "default", ema_decay=decay)
