"""Release checkpoints: what prediction needs from a training checkpoint, and nothing else.

A training checkpoint carries the optimizer's moments (twice the weights again for Adam), the
scheduler, the counters and the random states, so that a run resumes exactly. A release keeps the
weights (the validated moving average where the run kept one), the config, the tokenizers and
every topology's extras (recaser, labels, word tables, ...), in the same checkpoint format, so every
tool that reads a checkpoint reads a release unchanged. Its ``release`` entry says so; training
refuses to resume from one (``refuse_resume``). The weights may be stored in bf16 or fp16 (half
the size again); they load back into the model's fp32 parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from seq2seq import __version__
from seq2seq.errors import CheckpointError, check_choice
from seq2seq.training.averaging import TRAINING_STATE, kept_weights
from seq2seq.training.checkpoint import load_model_checkpoint, save_checkpoint

RELEASE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# What only resuming reads (the fp16 loss scale too); the format keys are written afresh.
DROPPED = (*TRAINING_STATE, "grad_scaler", "format", "version")


def compact_weights(state: dict[str, Tensor], dtype: torch.dtype) -> dict[str, Tensor]:
    """The floating-point tensors of ``state`` as compact copies in ``dtype`` (the others as they
    are). Tensors that share memory (tied embeddings) stay shared, so a tied matrix is stored once;
    a view is stored alone, not with the larger tensor it views."""
    copies: dict[tuple, Tensor] = {}
    out = {}
    for name, tensor in state.items():
        if not tensor.is_floating_point():
            out[name] = tensor
            continue
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
               tuple(tensor.stride()))
        if key not in copies:
            copies[key] = tensor.detach().to(dtype=dtype, copy=True).contiguous()
        out[name] = copies[key]
    return out


def release_payload(payload: dict[str, Any], dtype: str, source: str) -> dict[str, Any]:
    """A loaded checkpoint as a release: without training state, weights in ``dtype`` (fp32,
    bf16, fp16), marked with ``release`` = {dtype, source, step, seq2seq version}."""
    check_choice("--dtype", dtype, tuple(RELEASE_DTYPES))
    released = {key: value for key, value in payload.items() if key not in DROPPED}
    released["model"] = compact_weights(kept_weights(payload), RELEASE_DTYPES[dtype])
    earlier = payload.get("release") or {}
    step = (payload.get("trainer") or {}).get("step", earlier.get("step"))
    released["release"] = {"dtype": dtype, "source": earlier.get("source", source), "step": step,
                           "seq2seq": __version__}
    return released


def make_release(checkpoint: str | Path, out: str | Path, dtype: str = "fp32") -> dict[str, Any]:
    """Write the release of ``checkpoint`` to ``out`` (atomically) and return its ``release``
    entry. ``checkpoint`` may itself be a release (e.g. an fp32 one made bf16)."""
    if Path(out).resolve() == Path(checkpoint).resolve():
        raise CheckpointError(f"--out {out}: the checkpoint itself; write the release to another file")
    payload = load_model_checkpoint(checkpoint)
    released = release_payload(payload, dtype, Path(checkpoint).name)
    save_checkpoint(out, released)
    return released["release"]


def is_release(payload: dict[str, Any]) -> bool:
    """Whether a loaded checkpoint is a release (``make_release``)."""
    return isinstance(payload.get("release"), dict)


def refuse_resume(payload: dict[str, Any], path: str | Path) -> None:
    """A CheckpointError when a run would resume from a release: it has no optimizer, scheduler,
    counters or random states, so training could not go on where it stopped."""
    if is_release(payload):
        info = payload["release"]
        raise CheckpointError(
            f"{path}: a release checkpoint ({info.get('dtype')}, made from {info.get('source')} by "
            "seq2seq-release): it holds what prediction needs, not the optimizer, scheduler and "
            "trainer state a run resumes from. Resume from the run's own last.pt, or train anew in "
            "another run folder (hydra.run.dir=...)")
