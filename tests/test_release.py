"""Release checkpoints: prediction's share of a training checkpoint, predicting as it does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seq2seq.cli.release import main as release_main
from seq2seq.errors import CheckpointError, ConfigError
from seq2seq.pipeline import run_training
from seq2seq.predict import load_predictor
from seq2seq.release import compact_weights, is_release, make_release, refuse_resume, release_payload
from seq2seq.training.checkpoint import load_checkpoint, save_checkpoint
from seq2seq.translate import Translator
from tests.conftest import compose_train
from tests.test_faults import FAST
from tests.test_smoke import tiny_overrides
from tests.test_topologies import overrides_for

TRAINING_ONLY = ("optimizer", "scheduler", "trainer", "rng", "rng_ranks", "grad_scaler", "ema")
LINES = ["one two three", "we have twenty-one cats", "", "eighty-eight apples and twelve pears"]


def tensor_bytes(state) -> int:
    """Bytes of the tensors in a nested optimizer state."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(tensor_bytes(value) for value in state.values())
    if isinstance(state, (list, tuple)):
        return sum(tensor_bytes(value) for value in state)
    return 0


@pytest.fixture(scope="module")
def translate_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("release")
    run_training(compose_train(tiny_overrides(tmp) + FAST + [
        "trainer.max_epochs=30", "trainer.max_steps=120", "trainer.lr=0.01", "data.max_length=20",
        "trainer.validate_every=60", "trainer.ema_decay=0.9"]), tmp / "run")
    return tmp / "run"


@pytest.mark.slow
def test_fp32_release_drops_the_training_state_and_translates_the_same(translate_run, tmp_path):
    best = translate_run / "checkpoints" / "best.pt"
    out = tmp_path / "model.pt"
    info = make_release(best, out)
    released, original = load_checkpoint(out), load_checkpoint(best)
    assert is_release(released) and info == released["release"]
    assert info["dtype"] == "fp32" and info["source"] == "best.pt" and info["step"] > 0
    assert not [key for key in TRAINING_ONLY if key in released]
    assert released["config"] == original["config"]
    assert released["tokenizers"] == original["tokenizers"]
    # the optimizer's moments (Adam: two per weight) are gone from the file
    saved = best.stat().st_size - out.stat().st_size
    assert saved >= 0.9 * tensor_bytes(original["optimizer"]["state"]) > 0
    assert load_predictor(out).predict(LINES) == load_predictor(best).predict(LINES)
    for beam in (1, 3):
        expected = Translator.from_checkpoint(best, beam=beam).translate(LINES)
        assert Translator.from_checkpoint(out, beam=beam).translate(LINES) == expected


@pytest.mark.slow
def test_release_of_last_pt_keeps_the_validated_average(translate_run, tmp_path):
    last = load_checkpoint(translate_run / "checkpoints" / "last.pt")
    released = release_payload(last, "fp32", "last.pt")
    assert "ema" not in released
    for name, value in last["ema"]["weights"].items():
        assert torch.equal(released["model"][name], value)


@pytest.mark.slow
def test_bf16_release_loads_into_fp32_parameters_and_predicts(translate_run, tmp_path, capsys):
    best = translate_run / "checkpoints" / "best.pt"
    fp32, bf16 = tmp_path / "fp32.pt", tmp_path / "bf16.pt"
    make_release(best, fp32)
    assert release_main(["--checkpoint", str(best), "--out", str(bf16), "--dtype", "bf16"]) == 0
    assert "bf16 weights" in capsys.readouterr().out
    weights = load_checkpoint(bf16)["model"]
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.bfloat16}
    assert bf16.stat().st_size < fp32.stat().st_size
    translator = Translator.from_checkpoint(bf16)
    assert {p.dtype for p in translator.model.parameters()} == {torch.float32}
    output = translator.translate(LINES)
    assert len(output) == len(LINES) and output[2] == "" and output[0]


@pytest.mark.slow
def test_training_refuses_to_resume_from_a_release(translate_run, tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    make_release(translate_run / "checkpoints" / "last.pt", run_dir / "checkpoints" / "last.pt")
    cfg = compose_train(tiny_overrides(translate_run.parent) + FAST + [
        "trainer.max_epochs=30", "trainer.max_steps=120", "trainer.lr=0.01", "data.max_length=20",
        "trainer.validate_every=60", "trainer.ema_decay=0.9", "resume=true"])
    with pytest.raises(CheckpointError, match="a release checkpoint"):
        run_training(cfg, run_dir)


@pytest.mark.slow
def test_classify_release_predicts_the_same(tmp_path):
    run_training(compose_train(overrides_for(tmp_path, "snips_intent") + [
        "model=classifier", "model.encoder.embedding_dim=16", "model.encoder.hidden_size=16",
        "topology.auxiliary_tags=false", "topology.augment_copies=0", "trainer.max_steps=20",
        "trainer.early_stopping_metric=accuracy"]), tmp_path / "run")
    best = tmp_path / "run" / "checkpoints" / "best.pt"
    make_release(best, tmp_path / "classify.pt")
    lines = ["play some music by nina simone", "what is the weather in oslo", "play the beatles"]
    expected = load_predictor(best).predict(lines)
    assert load_predictor(tmp_path / "classify.pt").predict(lines) == expected
    assert set(expected) <= {"PlayMusic", "GetWeather"}
    released = load_checkpoint(tmp_path / "classify.pt")
    assert released["labels"] == load_checkpoint(best)["labels"]


def test_tied_weights_stay_shared_and_views_are_stored_alone():
    matrix = torch.randn(6, 4)
    state = {"embedding": matrix, "output": matrix, "row": matrix[1], "ids": torch.arange(3)}
    for dtype in (torch.float32, torch.bfloat16):
        out = compact_weights(state, dtype)
        assert out["embedding"] is out["output"] and out["embedding"].dtype == dtype
        assert out["row"].untyped_storage().nbytes() == 4 * out["row"].element_size()
        assert out["ids"] is state["ids"]  # ids are never cast
    assert compact_weights(state, torch.float32)["embedding"].data_ptr() != matrix.data_ptr()


def test_refuse_resume_names_the_file_and_passes_a_training_checkpoint():
    payload = {"model": {}, "config": {}, "optimizer": {}, "trainer": {"step": 3}}
    refuse_resume(payload, "last.pt")  # a training checkpoint resumes
    released = release_payload(payload, "bf16", "best.pt")
    assert released["release"]["step"] == 3
    with pytest.raises(CheckpointError, match=r"x/last.pt: a release checkpoint \(bf16, made from best"):
        refuse_resume(released, "x/last.pt")


def test_release_of_a_release_keeps_its_source_and_refuses_an_unknown_dtype():
    payload = {"model": {"w": torch.ones(2)}, "config": {}, "trainer": {"step": 5}}
    again = release_payload(release_payload(payload, "fp32", "best.pt"), "fp16", "model.pt")
    assert again["release"]["source"] == "best.pt" and again["release"]["step"] == 5
    assert again["model"]["w"].dtype == torch.float16
    with pytest.raises(ConfigError, match="--dtype='int8'"):
        release_payload(payload, "int8", "best.pt")


def test_release_tool_refuses_to_overwrite_its_input_and_names_a_missing_file(tmp_path, capsys):
    path = tmp_path / "best.pt"
    save_checkpoint(path, {"model": {}, "config": {}})
    assert release_main(["--checkpoint", str(path), "--out", str(path)]) == 2
    assert "the checkpoint itself" in capsys.readouterr().err
    assert release_main(["--checkpoint", str(tmp_path / "nope.pt"), "--out", "x.pt"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        release_main(["--version"])
    assert exit_info.value.code == 0
