"""init_from: a new run starts from a checkpoint's weights and tokenizers, with a fresh optimizer,
schedule and counters; tensors that do not fit start fresh, and a checkpoint of nothing that fits
is refused."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from seq2seq.errors import ConfigError
from seq2seq.pipeline import run_training
from seq2seq.training.checkpoint import load_checkpoint, save_checkpoint
from seq2seq.training.transfer import check_init_from, initialize_from, model_changes
from tests.conftest import compose_train
from tests.test_smoke import tiny_overrides


def test_tensors_that_fit_are_taken_and_the_others_start_fresh(tmp_path, caplog, monkeypatch):
    torch.manual_seed(0)
    source = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 3))
    path = tmp_path / "source.pt"
    save_checkpoint(path, {"model": source.state_dict(), "config": {"model": {"width": 4}}})
    # the SentencePiece models are not the point here: load_model_checkpoint without its check
    monkeypatch.setattr("seq2seq.training.transfer.load_model_checkpoint", load_checkpoint)
    target = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 5))  # another output size
    before = target[1].weight.detach().clone()
    with caplog.at_level(logging.INFO):
        facts = initialize_from(target, path, {"model": {"width": 6}})
    assert torch.equal(target[0].weight, source[0].weight)
    assert torch.equal(target[1].weight, before)  # shape (3, 4) there, (5, 4) here
    assert facts["init_tensors"] == 1 and facts["init_fresh"] == 2
    assert "model.width: 4 -> 6" in caplog.text and "1.weight (shape (3, 4) there" in caplog.text
    with pytest.raises(ConfigError, match="none of its weights fit"):
        initialize_from(nn.Linear(7, 7), path, {})


def test_model_changes_lists_the_settings_that_differ():
    assert model_changes({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}, "d": 4}) == [
        "model.b.c: 2 -> 3"]


@pytest.mark.slow
def test_a_fine_tuning_run_starts_from_the_weights_with_fresh_counters(tmp_path):
    parent = tmp_path / "parent"
    run_training(compose_train(tiny_overrides(tmp_path) + ["trainer.max_steps=6"]), parent)
    best = parent / "checkpoints" / "best.pt"
    # the child trains on other data (another seed, so its own tokenizer would differ)
    child_overrides = tiny_overrides(tmp_path) + [
        f"data.root={tmp_path / 'other'}", "data.generator.seed=7", "trainer.max_steps=3",
        f"init_from={best}", "trainer.lr=0.0"]  # lr 0: the weights stay the parent's
    child = tmp_path / "child"
    run_training(compose_train(child_overrides), child)
    parent_ckpt, child_ckpt = load_checkpoint(best), load_checkpoint(child / "checkpoints" / "last.pt")
    assert child_ckpt["tokenizers"] == parent_ckpt["tokenizers"]
    for key, tensor in parent_ckpt["model"].items():
        if not key.endswith("output_ids"):
            assert torch.equal(child_ckpt["model"][key], tensor), key
    assert child_ckpt["trainer"]["step"] == 3  # counters from 0, not the parent's 6
    report = json.loads((child / "report.json").read_text())
    assert report["init_from"] == str(best) and report["init_fresh"] <= 1


def test_init_from_a_missing_file_names_it(tmp_path):
    with pytest.raises(Exception, match=str(tmp_path / "nowhere.pt")):
        initialize_from(nn.Linear(2, 2), tmp_path / "nowhere.pt", {})


def test_init_from_is_a_top_level_key():
    assert compose_train([]).init_from is None
    assert Path(str(compose_train(["init_from=x.pt"]).init_from)) == Path("x.pt")


def test_a_resumed_fine_tuning_run_keeps_the_checkpoints_tokenizers(monkeypatch):
    """resume=true of an init_from run: its weights are of the parent's pieces, so it must not
    train tokenizers of its own data (same vocabulary size, other pieces: silent garbage)."""
    from types import SimpleNamespace

    from seq2seq.topologies import translate

    files = SimpleNamespace(train="train", pair=lambda split: ("src", "tgt"))
    monkeypatch.setattr(translate, "build", lambda node: SimpleNamespace(
        files=lambda: files, cache_dir="cache"))
    monkeypatch.setattr(translate, "checkpoint_tokenizers", lambda path: f"tokenizers of {path}")
    monkeypatch.setattr(translate, "build_tokenizers", lambda *args: "tokenizers of the data")
    for resume in (False, True):
        cfg = compose_train(["init_from=parent.pt", f"resume={str(resume).lower()}"])
        assert translate.corpus_and_tokenizers(cfg)[1] == "tokenizers of parent.pt"


def test_init_from_with_word_vectors_from_a_file_is_refused():
    cfg = compose_train(["init_from=x.pt", "model.decoder.pretrained_embeddings=glove.txt"])
    with pytest.raises(ConfigError, match="model.decoder.pretrained_embeddings"):
        check_init_from(cfg)
    check_init_from(compose_train(["init_from=x.pt"]))
