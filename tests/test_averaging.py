"""Checkpoint averaging: the mean of the parameters, from a run, the CLI and the library."""

from __future__ import annotations

import json

import pytest
import torch

from seq2seq.errors import CheckpointError, ConfigError
from seq2seq.pipeline import run_training
from seq2seq.training.averaging import average_checkpoints, kept_weights
from seq2seq.training.checkpoint import load_checkpoint, save_checkpoint
from tests.conftest import compose_train, group_settings
from tests.test_smoke import run_cli, tiny_overrides


def write(path, weight: torch.Tensor, **extra) -> None:
    save_checkpoint(path, {"model": {"w": weight, "steps": torch.tensor(3)}, "config": {},
                           "optimizer": {"state": 1}, **extra})


def test_average_is_the_parameter_mean_without_training_state(tmp_path):
    for i, value in enumerate([1.0, 2.0, 6.0]):
        write(tmp_path / f"step_{i}.pt", torch.full((2, 2), value), tokenizers="spm",
              step=i)
    payload = average_checkpoints([tmp_path / f"step_{i}.pt" for i in range(3)])
    torch.testing.assert_close(payload["model"]["w"], torch.full((2, 2), 3.0))
    assert int(payload["model"]["steps"]) == 3  # integer buffers are copied, not averaged
    assert payload["step"] == 2 and payload["tokenizers"] == "spm" and "optimizer" not in payload


def test_a_moving_average_is_what_is_averaged_where_the_checkpoints_keep_one(tmp_path):
    # step checkpoints of a run with trainer.ema_decay hold the raw weights (to resume from) and
    # the moving average (what the run validates and tests): the average is of the latter
    for i, (raw, ema) in enumerate([(10.0, 1.0), (-4.0, 3.0)]):
        write(tmp_path / f"step_{i}.pt", torch.full((2, 2), raw),
              ema={"decay": 0.999, "updates": i, "weights": {"w": torch.full((2, 2), ema)}})
    payload = average_checkpoints([tmp_path / "step_0.pt", tmp_path / "step_1.pt"])
    torch.testing.assert_close(payload["model"]["w"], torch.full((2, 2), 2.0))
    assert int(payload["model"]["steps"]) == 3 and "ema" not in payload


def test_averaging_checkpoints_of_other_vocabularies_is_refused(tmp_path):
    """Averaging rows of an output layer that mean other pieces would make a model of nonsense."""
    write(tmp_path / "a.pt", torch.zeros(2, 2), tokenizers="spm one")
    write(tmp_path / "b.pt", torch.zeros(2, 2), tokenizers="spm two")
    with pytest.raises(CheckpointError, match="b.pt: its SentencePiece models differ from .*a.pt"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])
    save_checkpoint(tmp_path / "c.pt", {"model": {"w": torch.zeros(2, 2), "steps": torch.tensor(4)},
                                        "config": {}, "tokenizers": "spm one"})
    with pytest.raises(CheckpointError, match="c.pt: steps differs from .*a.pt"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "c.pt"])


def test_averaging_different_models_names_the_file(tmp_path):
    write(tmp_path / "a.pt", torch.zeros(2, 2))
    write(tmp_path / "b.pt", torch.zeros(3, 2))
    with pytest.raises(CheckpointError, match=r"b\.pt: w has shape \(3, 2\)"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])
    with pytest.raises(CheckpointError, match="at least two"):
        average_checkpoints([tmp_path / "a.pt"])


def test_average_last_needs_the_checkpoints_kept():
    with pytest.raises(ConfigError, match="trainer.keep_checkpoints >= 3"):
        group_settings("trainer", "default", keep_checkpoints=2, average_last=3)


@pytest.mark.slow
def test_run_averages_its_last_checkpoints_and_the_cli_does_too(tmp_path):
    run_dir = tmp_path / "run"
    cfg = compose_train(tiny_overrides(tmp_path) + ["trainer.max_steps=6", "trainer.validate_every=2",
                                                    "trainer.keep_checkpoints=3", "trainer.average_last=3",
                                                    "trainer.ema_decay=0.9"])
    report = run_training(cfg, run_dir)
    folder = run_dir / "checkpoints"
    assert report["averaged_checkpoints"] == ["step_2.pt", "step_4.pt", "step_6.pt"]
    assert "averaged_valid_bleu" in json.loads((run_dir / "report.json").read_text())
    assert report["checkpoint"].endswith(("averaged.pt", "best.pt"))
    # the mean of the moving averages the run validated, not of its raw weights
    steps = [kept_weights(load_checkpoint(folder / f"step_{s}.pt")) for s in (2, 4, 6)]
    averaged = load_checkpoint(folder / "averaged.pt")["model"]
    for name, tensor in averaged.items():
        torch.testing.assert_close(tensor, sum(s[name] for s in steps) / 3)
    raw = load_checkpoint(folder / "step_6.pt")["model"]
    assert any(not torch.equal(raw[name], steps[-1][name]) for name in raw)

    result = run_cli("average.py", str(folder), "--last", "2", "--out", str(tmp_path / "two.pt"))
    assert result.returncode == 0, result.stderr.decode()
    assert "averaged 2 checkpoints (step_4.pt, step_6.pt)" in result.stdout.decode()
    result = run_cli("translate.py", "--checkpoint", str(tmp_path / "two.pt"), stdin=b"one two\n")
    assert result.returncode == 0 and len(result.stdout.decode().split("\n")) == 2
    result = run_cli("average.py", str(tmp_path / "missing.pt"), str(folder / "best.pt"),
                     "--out", str(tmp_path / "bad.pt"))
    assert result.returncode == 2 and "missing.pt: checkpoint not found" in result.stderr.decode()
    assert not (tmp_path / "bad.pt").exists()


def test_tag_runs_average_too_and_choose_on_their_own_metric(tmp_path):
    from tests.test_topologies import overrides_for
    run_dir = tmp_path / "run"
    report = run_training(compose_train(overrides_for(tmp_path, "snips_slots") + [
        "trainer.max_steps=6", "trainer.validate_every=2", "trainer.keep_checkpoints=3",
        "trainer.average_last=3"]), run_dir)
    assert report["averaged_checkpoints"] == ["step_2.pt", "step_4.pt", "step_6.pt"]
    assert "averaged_valid_slot_f1" in json.loads((run_dir / "report.json").read_text())
    assert report["checkpoint"].endswith(("averaged.pt", "best.pt"))
