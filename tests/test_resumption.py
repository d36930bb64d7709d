"""A resumed run keeps the settings that decide what it trains on and in which order, and takes
a new learning rate."""

import pytest
import torch

from seq2seq.errors import ConfigError
from seq2seq.training.resumption import changed_lr, check_resumable
from seq2seq.training.trainer import Trainer
from tests.conftest import group_settings
from tests.test_trainer import FixedFigures

STORED = {"seed": 1, "data": {"root": "/old/place", "limit_train": None, "max_length": 100},
          "trainer": {"lr": 0.002, "batch_tokens": 3000, "max_minutes": 90},
          "model": {"encoder": {"hidden_size": 128}}, "report": {"samples": 5}}


def changed(**edits):
    new = {k: dict(v) if isinstance(v, dict) else v for k, v in STORED.items()}
    for key, value in edits.items():
        group, _, name = key.partition("__")
        if name:
            new[group][name] = value
        else:
            new[group] = value
    return new


@pytest.mark.parametrize("edits,named", [
    ({"seed": 2}, "seed: 1 -> 2"),
    ({"trainer__batch_tokens": 2000}, "trainer.batch_tokens: 3000 -> 2000"),
    ({"data__limit_train": 500}, "data.limit_train: None -> 500"),
    ({"model": {"encoder": {"hidden_size": 256}}}, "model.encoder.hidden_size: 128 -> 256"),
])
def test_settings_that_change_the_data_or_its_order_are_refused_by_name(edits, named):
    with pytest.raises(ConfigError, match=f"last.pt: resume=true with settings that change .*"
                                          f"{named.replace('(', '.').replace(')', '.')}"):
        check_resumable(STORED, changed(**edits), "last.pt")


def test_budgets_reports_and_the_corpus_place_may_change():
    check_resumable(STORED, changed(trainer__max_minutes=120, trainer__lr=1e-4,
                                    report__samples=9, data__root="/new/place"), "last.pt")
    check_resumable({"seed": 1}, changed(), "last.pt")  # keys the checkpoint predates
    assert changed_lr(STORED, changed(trainer__lr=1e-4)) == 1e-4
    assert changed_lr(STORED, changed()) is None


def test_a_new_learning_rate_takes_effect_on_resume(tmp_path):
    """Adam's saved state holds the old rate: 'try a lower trainer.lr' must work on resume."""
    settings = group_settings("trainer", "default", lr=0.5)
    trainer = Trainer(settings, torch.nn.Linear(2, 1), FixedFigures([]), tmp_path,
                      {"trainer": {"lr": 0.5}})
    path = trainer.save_last()
    resumed = Trainer(group_settings("trainer", "default", lr=0.01), torch.nn.Linear(2, 1),
                      FixedFigures([]), tmp_path, {"trainer": {"lr": 0.01}})
    resumed.resume(path)
    assert resumed.optimizer.param_groups[0]["lr"] == 0.01
    same = Trainer(settings, torch.nn.Linear(2, 1), FixedFigures([]), tmp_path,
                   {"trainer": {"lr": 0.5}})
    same.resume(path)
    assert same.optimizer.param_groups[0]["lr"] == 0.5
