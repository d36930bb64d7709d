"""The ``device`` option, tensors on the model's device, and fp16 training with a GradScaler.

This machine has no GPU: placement is checked on the CPU by sending every tensor made without an
explicit device to ``meta`` (torch's default-device mode) and recording the device of every
tensor an operation makes. A forgotten ``device=`` then shows up as a meta tensor (or fails when
mixed with the model's CPU tensors), as it would put a CPU tensor beside a GPU model.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from seq2seq import device as device_module
from seq2seq.cli import translate as translate_cli
from seq2seq.data.batching import make_batch
from seq2seq.device import model_device, resolve_device, to_device
from seq2seq.errors import ConfigError
from seq2seq.models.decoder import RNNDecoder
from seq2seq.models.encoder import RNNEncoder
from seq2seq.models.encoder_decoder import EncoderDecoder
from seq2seq.pipeline import run_training
from seq2seq.search import decode
from seq2seq.topologies.translate import TranslationObjective, ValidationData
from seq2seq.training.checkpoint import load_checkpoint
from seq2seq.training.distributed import choose_backend
from seq2seq.training.trainer import Trainer
from tests.conftest import ROOT, compose_train, group_settings
from tests.test_faults import FAST
from tests.test_smoke import tiny_overrides

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")


class TensorDevices(TorchDispatchMode):
    """Records the device of every tensor that an operation returns."""

    def __init__(self) -> None:
        super().__init__()
        self.devices: set[torch.device] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        self.devices.update(t.device for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor))
        return out


@contextlib.contextmanager
def forgotten_devices_on_meta() -> Iterator[TensorDevices]:
    """Inside: a tensor made without ``device=`` lands on meta; every tensor made is recorded."""
    with torch.device("meta"), TensorDevices() as seen:
        yield seen


def tiny_model(cell: str = "gru", input_feeding: bool = False, implementation: str = "torch",
               residual: bool = False, layers: int = 1) -> EncoderDecoder:
    torch.manual_seed(0)

    def encoder(vocab_size: int) -> RNNEncoder:
        return RNNEncoder(vocab_size, cell=cell, embedding_dim=4, hidden_size=3, num_layers=layers,
                          bidirectional=True, dropout=0.1, residual=residual,
                          implementation=implementation, word_dropout=0.1)

    def decoder(vocab_size: int, context_size: int, attention: Any) -> RNNDecoder:
        return RNNDecoder(vocab_size, context_size, attention=attention, cell=cell,
                          embedding_dim=4, hidden_size=5, num_layers=layers, dropout=0.1,
                          input_feeding=input_feeding, bridge=True, tie_embeddings=False,
                          residual=residual, implementation=implementation, word_dropout=0.1,
                          output_vocabulary="all")

    return EncoderDecoder(encoder, decoder, 11, 11, attention="bahdanau", share_embeddings=False)


def batch():
    # one short row: the padded share is large, so the encoder packs (src_len goes to the host)
    return make_batch([[4, 5, 6, 7, 8, 9], [8, 9]], [[10, 4, 5], [6, 7, 8, 9]], [0, 1])


def trainer_for(model: torch.nn.Module, tmp_path: Path, **settings: Any) -> Trainer:
    objective = TranslationObjective(None, ValidationData([], [], []),
                                     group_settings("search", "beam"))
    return Trainer(group_settings("trainer", "default", lr=1e-2, **settings), model, objective,
                   tmp_path, {})


# -- the option -----------------------------------------------------------------------------------
def test_cpu_and_auto_without_a_gpu_resolve_to_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == resolve_device(None) == torch.device("cpu")


@pytest.mark.parametrize("value", ["cuda", "cuda:0", "CUDA:1"])
def test_a_gpu_without_cuda_is_a_config_error_naming_the_option(monkeypatch, value):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=rf"--device={value.lower()}: this machine has no CUDA"):
        resolve_device(value, "--device")


def test_an_unknown_device_names_the_choices():
    with pytest.raises(ConfigError, match=r"device='gpu': expected one of auto, cpu, cuda, cuda:N"):
        resolve_device("gpu")


def test_cuda_means_the_local_rank_under_torchrun_and_a_missing_gpu_is_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)  # an explicit index wins
    with pytest.raises(ConfigError, match=r"device=cuda:2: GPU 2 asked for, but this machine has 2"):
        resolve_device("cuda:2")
    monkeypatch.setenv("LOCAL_RANK", "3")  # more ranks on the node than GPUs
    with pytest.raises(ConfigError, match="GPU 3 asked for"):
        resolve_device("auto")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # several ranks on this node: one GPU each
    with pytest.raises(ConfigError, match="device=cuda:0: under torchrun every rank"):
        resolve_device("cuda:0")


def test_the_backend_follows_the_device():
    assert choose_backend("auto", torch.device("cpu")) == "gloo"
    assert choose_backend("auto", torch.device("cuda", 0)) == "nccl"
    assert choose_backend("gloo", torch.device("cuda", 0)) == "gloo"
    with pytest.raises(ConfigError, match="distributed.backend=nccl reduces GPU tensors"):
        choose_backend("nccl", torch.device("cpu"))


def test_to_device_moves_every_tensor_of_a_batch_and_keeps_its_type():
    host = batch()
    assert to_device(host, torch.device("cpu")) == host  # already there: the same tensors
    assert all(a is b for a, b in zip(to_device(host, torch.device("cpu")), host))
    moved = to_device(host, torch.device("meta"))
    assert type(moved) is type(host) and {t.device.type for t in moved} == {"meta"}


def test_the_recorder_catches_a_forgotten_device():
    # the harness of the placement tests below: it must see a tensor made without device=
    with forgotten_devices_on_meta() as seen:
        torch.arange(3)
    assert torch.device("meta") in seen.devices
    with forgotten_devices_on_meta() as seen:
        torch.arange(3, device="cpu") + 1
    assert seen.devices == {torch.device("cpu")}


# -- placement ------------------------------------------------------------------------------------
MODELS = {"gru": {}, "lstm_feeding": dict(cell="lstm", input_feeding=True),
          "reference_cells": dict(implementation="reference"),
          "residual": dict(residual=True, layers=2)}


@pytest.mark.parametrize("kind", sorted(MODELS))
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_training_step_makes_every_tensor_on_the_models_device(tmp_path, kind, precision):
    model = tiny_model(**MODELS[kind])
    trainer = trainer_for(model, tmp_path, precision=precision)
    host = [batch(), batch()]  # accumulated: two backward passes
    with forgotten_devices_on_meta() as seen:
        loss, tokens, _ = trainer.train_step(host)
    assert seen.devices == {model_device(model)}
    assert tokens == 2 * batch().num_tgt_tokens and loss > 0


@pytest.mark.parametrize("kind", sorted(MODELS))
@pytest.mark.parametrize("beam", [1, 3])
def test_search_makes_every_tensor_on_the_models_device(kind, beam):
    model = tiny_model(**MODELS[kind]).eval()
    src, src_len = torch.tensor([[4, 5, 6, 3], [7, 8, 3, 0]]), torch.tensor([4, 3])
    with forgotten_devices_on_meta() as seen:
        hyps = decode(model, src, src_len, beam=beam, max_length=6, return_attention=True)
    assert seen.devices == {model_device(model)}
    assert len(hyps) == 2 and all(h.attention is not None for h in hyps)


# -- fp16 -----------------------------------------------------------------------------------------
def test_fp16_scales_the_loss_keeps_fp32_weights_and_matches_fp32(tmp_path):
    losses = {}
    for precision in ("fp32", "fp16"):
        model = tiny_model()
        trainer = trainer_for(model, tmp_path / precision, precision=precision)
        losses[precision], _, _ = trainer.train_step([batch()])
        assert all(p.dtype == torch.float32 for p in model.parameters())
    assert losses["fp16"] == pytest.approx(losses["fp32"], rel=1e-2)
    assert losses["fp16"] != losses["fp32"]  # the forward pass did run in fp16
    assert trainer.update.scaler.is_enabled() and trainer.update.state_dict()["scale"] > 0


def test_an_fp16_overflow_skips_the_update_and_halves_the_scale(tmp_path):
    model = tiny_model()
    trainer = trainer_for(model, tmp_path, precision="fp16")
    trainer.update.scaler.load_state_dict({**trainer.update.state_dict(), "scale": 1e38})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss, _, _ = trainer.train_step([batch()])
    assert math.isfinite(loss) and not math.isfinite(trainer.grad_norm)  # the gradient overflowed
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert trainer.update.state_dict()["scale"] == pytest.approx(0.5e38)


@pytest.mark.slow
def test_fp16_training_resumes_exactly_with_its_grad_scaler(tmp_path):
    base = tiny_overrides(tmp_path) + FAST + ["trainer.precision=fp16", "trainer.validate_every=0"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_training(compose_train(base + ["trainer.max_steps=4"]), straight)
    run_training(compose_train(base + ["trainer.max_steps=2"]), resumed)
    scale_at_2 = load_checkpoint(resumed / "checkpoints" / "last.pt")["grad_scaler"]["scale"]
    run_training(compose_train(base + ["trainer.max_steps=4", "resume=true"]), resumed)
    one, two = (load_checkpoint(run / "checkpoints" / "last.pt") for run in (straight, resumed))
    assert one["trainer"]["precision"] == "fp16" and scale_at_2 > 0
    assert one["grad_scaler"] == two["grad_scaler"]
    for name, value in one["model"].items():
        assert torch.equal(two["model"][name], value), name


# -- the tools refuse a missing GPU before any work ----------------------------------------------
@NO_CUDA
def test_translate_tool_refuses_cuda_without_a_gpu_before_loading(tmp_path, capsys):
    missing = tmp_path / "no_such.pt"  # never read: the device is checked first
    assert translate_cli.main(["--checkpoint", str(missing), "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "--device=cuda: this machine has no CUDA" in err and "not found" not in err


@NO_CUDA
@pytest.mark.slow
def test_train_tool_refuses_cuda_without_a_gpu_before_any_work(tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"),
                           *tiny_overrides(tmp_path), "device=cuda", f"hydra.run.dir={run_dir}"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "device=cuda: this machine has no CUDA" in done.stdout + done.stderr
    assert not (tmp_path / "numbers").exists() and not (run_dir / "checkpoints").exists()


def test_every_tool_that_runs_a_model_has_a_device_option():
    from benchmarks import speed
    from seq2seq.cli import evaluate, search_sweep

    for parse in (translate_cli.parse_args, evaluate.parse_args):
        assert parse(["--checkpoint", "x.pt", "--src", "s", "--ref", "r", "--device", "cpu"]
                     if parse is evaluate.parse_args else
                     ["--checkpoint", "x.pt", "--device", "cpu"]).device == "cpu"
    assert "--device" in search_sweep.build_parser().format_help()
    assert "--device" in speed.build_parser().format_help()


# -- on a GPU ------------------------------------------------------------------------------------
@CUDA
def test_a_gpu_step_and_search_match_the_cpu(tmp_path):
    results = {}
    for where in ("cpu", "cuda"):
        model = tiny_model().to(resolve_device(where))
        model.decoder.dropout.p = model.encoder.dropout.p = 0.0
        trainer = trainer_for(model, tmp_path / where)
        loss, _, _ = trainer.train_step([batch()])
        model.eval()
        hyps = decode(model, *batch()[:2], beam=3, max_length=6)
        results[where] = (loss, [h.tokens for h in hyps])
    assert results["cuda"][0] == pytest.approx(results["cpu"][0], rel=1e-4)
    assert results["cuda"][1] == results["cpu"][1]


@CUDA
def test_auto_takes_the_gpu_and_bf16_where_supported():
    from seq2seq.precision import resolve_precision

    assert resolve_device("auto").type == "cuda"
    expected = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    assert resolve_precision("auto", device_type="cuda") == expected


def test_device_module_has_no_cuda_state_at_import():
    # importing seq2seq.device must not initialise CUDA (torchrun ranks pick their GPU later)
    assert not torch.cuda.is_initialized() or torch.cuda.is_available()
    assert device_module.DEVICE_CHOICES[0] == "auto"


@NO_CUDA
def test_the_gpu_benchmark_refuses_without_cuda(tmp_path, capsys):
    from benchmarks import gpu

    out = tmp_path / "gpu.json"
    assert gpu.main(["--data-root", str(tmp_path), "--out", str(out)]) == 2
    assert "torch sees none here" in capsys.readouterr().err and not out.exists()
