"""Training that survives faults: exact resume, signals, non-finite losses, bad run folders."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from seq2seq.errors import CheckpointError, ConfigError
from seq2seq.pipeline import run_training
from seq2seq.topologies.translate import TranslationObjective
from seq2seq.training.checkpoint import load_checkpoint
from seq2seq.training.state import NonFiniteLoss
from tests.conftest import ROOT, compose_train
from tests.test_smoke import tiny_overrides

FAST = ["trainer.validate_every=3", "report.bootstrap_resamples=0", "report.html=false",
        "report.attention_plots=0", "search.beam=1"]


def params(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / "last.pt")["model"]


@pytest.mark.parametrize("extra, stop, total", [
    ([], 4, 8),
    # The output layer restricted to the training targets' pieces (a buffer of the checkpoint).
    (["model.decoder.output_vocabulary=training_targets"], 4, 8),
    # Subword sampling: stop after the first epoch (a few large batches each), in an epoch whose
    # sampled segmentations the resumed run must draw again.
    (["tokenizer.sampling_alpha=0.3", "trainer.batch_tokens=4000",
      "trainer.max_epochs=5"], 7, 10),
])
@pytest.mark.slow
def test_stop_and_resume_equals_training_straight_through(tmp_path, extra, stop, total):
    base = tiny_overrides(tmp_path) + FAST + extra
    sampled = any(option.startswith("tokenizer.sampling_alpha") for option in extra)
    straight = compose_train(base + [f"trainer.max_steps={total}"])
    run_training(straight, tmp_path / "straight")
    first_half = compose_train(base + [f"trainer.max_steps={stop}"])
    run_training(first_half, tmp_path / "resumed")
    state = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["trainer"]
    assert state["step"] == stop
    if sampled:
        assert state["epoch"] >= 1 and state["batch_in_epoch"] > 0
    second_half = compose_train(base + [f"trainer.max_steps={total}", "resume=true"])
    run_training(second_half, tmp_path / "resumed")
    a, b = params(tmp_path / "straight"), params(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name  # bitwise on CPU
    if sampled:  # and the sampling did change what was trained on
        unsampled = compose_train(tiny_overrides(tmp_path) + FAST + [f"trainer.max_steps={total}"])
        run_training(unsampled, tmp_path / "unsampled")
        c = params(tmp_path / "unsampled")
        assert not all(torch.equal(a[name], c[name]) for name in a)


@pytest.mark.slow
def test_resuming_with_another_model_names_the_checkpoint_and_what_to_do(tmp_path):
    base = tiny_overrides(tmp_path) + FAST + ["model.decoder.output_vocabulary=training_targets"]
    run_training(compose_train(base + ["trainer.max_steps=2"]), tmp_path / "run")
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    before = last.read_bytes()
    # The same settings over other training pairs (the corpus files changed on disk): the targets
    # use fewer pieces, so the output layer keeps fewer ids.
    train_de = tmp_path / "numbers" / "train.de"
    train_de.write_text("".join(train_de.read_text().splitlines(keepends=True)[:20] * 15))
    changed = base + ["trainer.max_steps=4", "resume=true"]
    with pytest.raises(CheckpointError, match=r"(?s)last.pt: cannot resume from it.*"
                                              r"decoder.output_layer.output_ids: the saved output layer.*"
                                              r"hydra.run.dir"):
        run_training(compose_train(changed), tmp_path / "run")
    assert last.read_bytes() == before  # nothing overwritten


@pytest.mark.slow
def test_only_the_last_k_step_checkpoints_are_kept(tmp_path):
    cfg = compose_train(tiny_overrides(tmp_path) + FAST + ["trainer.max_steps=12",
                                                           "trainer.keep_checkpoints=2"])
    run_training(cfg, tmp_path / "run")
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["best.pt", "last.pt", "step_12.pt", "step_9.pt"]


@pytest.mark.slow
def test_sigterm_saves_last_and_says_how_to_resume(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), *tiny_overrides(tmp_path),
               "trainer.max_steps=100000", "trainer.max_epochs=1000", "trainer.validate_every=0",
               "trainer.log_every=1", f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    metrics = run_dir / "metrics.csv"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists()
                                      or len(metrics.read_text().splitlines()) < 3):
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    text = out.decode() + err.decode()
    assert process.returncode == 128 + signal.SIGTERM, text[-2000:]
    assert "SIGTERM received" in text and "resume=true" in text and "Traceback" not in text
    payload = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert payload["trainer"]["stop_reason"] == "interrupted by SIGTERM"
    assert payload["trainer"]["step"] >= 2


@pytest.mark.slow
def test_nonfinite_losses_are_skipped_then_stop_the_run(tmp_path, monkeypatch):
    real_loss = TranslationObjective.loss
    training_calls = []

    def loss_nan_at_step_two(self, model, batch, teacher_forcing, smoothing):
        value = real_loss(self, model, batch, teacher_forcing, smoothing)
        if model.training:
            training_calls.append(1)
            return value * float("nan") if len(training_calls) == 2 else value
        return value

    monkeypatch.setattr(TranslationObjective, "loss", loss_nan_at_step_two)
    run_training(compose_train(tiny_overrides(tmp_path) + FAST + ["trainer.max_steps=5"]),
                 tmp_path / "skipped")
    state = load_checkpoint(tmp_path / "skipped" / "checkpoints" / "last.pt")["trainer"]
    assert state["nonfinite_total"] == 1 and state["step"] == 5

    def always_nan(self, model, batch, teacher_forcing, smoothing):
        return real_loss(self, model, batch, teacher_forcing, smoothing) * float("nan")

    monkeypatch.setattr(TranslationObjective, "loss", always_nan)
    cfg = compose_train(tiny_overrides(tmp_path) + FAST + ["trainer.max_nonfinite=3"])
    with pytest.raises(NonFiniteLoss, match=r"stopped at step 3: 3 non-finite losses or gradients in a row"):
        run_training(cfg, tmp_path / "diverged")


def test_unwritable_run_folder_fails_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cfg = compose_train(tiny_overrides(tmp_path))
    with pytest.raises(ConfigError, match="is not writable"):
        run_training(cfg, blocker / "run")
    assert not (tmp_path / "numbers").exists()  # no work was done


def test_full_disk_fails_before_training(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 * 2**30, 10 * 2**30, 2**20))
    with pytest.raises(ConfigError, match="has 1 MiB free"):
        run_training(compose_train(tiny_overrides(tmp_path)), tmp_path / "run")
    assert not (tmp_path / "numbers").exists()


def test_corpus_line_of_100k_characters_is_named(tmp_path):
    from seq2seq.data.corpus import read_lines
    from seq2seq.errors import DataError
    path = tmp_path / "train.en"
    path.write_text("short\n" + "x" * 100_000 + "\n")
    with pytest.raises(DataError, match=r"train\.en:2: line has 100,000 characters"):
        read_lines(path)

