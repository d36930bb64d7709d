"""Checkpoint averaging: the mean of the parameters of a run's last few checkpoints, a cheap
ensemble that usually beats any one of them by a fraction of a BLEU point (Vaswani et al., 2017;
fairseq's ``scripts/average_checkpoints.py``).

A run trained with ``trainer.ema_decay`` validates, keeps and tests the moving average of its
weights, so the average of those is what is averaged: the raw weights that its step checkpoints
also hold (to resume from) are noisier than the moving average of any one step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from seq2seq.errors import CheckpointError
from seq2seq.training.checkpoint import load_checkpoint

# What a resumed run needs but an averaged model has not got: it is for translating, not resuming.
TRAINING_STATE = ("optimizer", "scheduler", "trainer", "rng", "rng_ranks", "ema")


def kept_weights(payload: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The model state a checkpoint's run validates and tests: its moving average of the weights
    where it keeps one (``trainer.ema_decay``), else its weights."""
    state = dict(payload["model"])
    if "ema" in payload:
        state.update(payload["ema"]["weights"])
    return state


def average_checkpoints(paths: Sequence[str | Path]) -> dict[str, Any]:
    """A checkpoint payload whose model is the parameter mean of ``paths`` (at least two, of the
    same model; each one's moving average where it has one); config, tokenizers and labels come
    from the last one."""
    if len(paths) < 2:
        raise CheckpointError(f"checkpoint averaging needs at least two checkpoints, got {len(paths)}")
    total: dict[str, torch.Tensor] = {}
    last: dict[str, Any] = {}
    for path in paths:
        previous, last = last, load_checkpoint(path)
        if previous and previous.get("tokenizers") != last.get("tokenizers"):
            raise CheckpointError(f"{path}: its SentencePiece models differ from {paths[0]}'s; "
                                  "an id would mean another piece in each: expected checkpoints "
                                  "of one run")
        state = kept_weights(last)
        if total and set(state) != set(total):
            raise CheckpointError(f"{path}: its parameters differ from {paths[0]}'s; "
                                  "expected checkpoints of one model")
        for name, tensor in state.items():
            if name in total and tensor.shape != total[name].shape:
                raise CheckpointError(f"{path}: {name} has shape {tuple(tensor.shape)}, "
                                      f"{paths[0]} has {tuple(total[name].shape)}")
            if name in total and not tensor.is_floating_point() and not torch.equal(tensor,
                                                                                  total[name]):
                # e.g. the ids a restricted output layer keeps: each row of its weight is another id
                raise CheckpointError(f"{path}: {name} differs from {paths[0]}'s (an output layer "
                                      "over other target ids?); expected checkpoints of one run")
            # float64 sums, so that averaging many checkpoints adds no rounding of its own
            value = tensor.double() if tensor.is_floating_point() else tensor
            total[name] = total[name] + value if name in total and tensor.is_floating_point() \
                else value
    averaged = {name: (value / len(paths)).to(state[name].dtype)
                if value.is_floating_point() else value for name, value in total.items()}
    payload = {key: value for key, value in last.items() if key not in TRAINING_STATE}
    payload["model"] = averaged
    payload["averaged_from"] = [str(p) for p in paths]
    return payload
