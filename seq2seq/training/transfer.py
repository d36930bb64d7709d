"""``init_from=PATH``: a new run that starts from another run's weights and tokenizers, with a
fresh optimizer, schedule and counters (fine-tuning, as fairseq's ``--finetune-from-model`` and
JoeyNMT's ``load_model`` with ``reset_*``; transfer to another topology or a wider model, where
the tensors that fit are taken and the rest start fresh).

The checkpoint may be a run's ``best.pt``/``last.pt`` or a release (``seq2seq-release``); it is
read as data only (``load_checkpoint``: weights-only unpickling and a checked config)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seq2seq.errors import ConfigError
from seq2seq.tokenization import TokenizerPair
from seq2seq.training.checkpoint import load_model_checkpoint
from seq2seq.training.resumption import flat

log = logging.getLogger(__name__)


def check_init_from(config: Any) -> None:
    """A ConfigError for ``init_from`` with word vectors from a file: the checkpoint's weights
    would overwrite the vectors while their rows stayed frozen or counted as covered."""
    if not config.get("init_from"):
        return
    model = config.get("model") or {}
    for side in ("encoder", "decoder"):
        if (model.get(side) or {}).get("pretrained_embeddings"):
            raise ConfigError(f"init_from={config.get('init_from')} with "
                              f"model.{side}.pretrained_embeddings: the checkpoint's embeddings "
                              "replace the file's vectors; use one or the other")


def checkpoint_tokenizers(path: str | Path) -> TokenizerPair:
    """The SentencePiece models a checkpoint was trained with: a run that starts from its weights
    must cut text into the same pieces, whatever its own data would train."""
    return TokenizerPair.from_state_dict(load_model_checkpoint(path)["tokenizers"])


def initialize_from(model: nn.Module, path: str | Path, config: dict[str, Any]) -> dict[str, Any]:
    """Copy into ``model`` every tensor of the checkpoint at ``path`` whose name and shape match
    (cast to the model's dtype), and leave the others as initialized; the kept-output-ids buffer
    stays this run's (the output layer's rows are per token id, whichever ids are scored).
    ``config`` is this run's: model settings that differ from the checkpoint's are logged.
    Returns the counts for the report. A ConfigError when nothing matches."""
    payload = load_model_checkpoint(path)
    source: dict[str, torch.Tensor] = payload["model"]
    target = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    fresh: list[str] = []
    for key, tensor in target.items():
        saved = source.get(key)
        if key.endswith("output_ids") or saved is None:
            fresh.append(key if saved is None else f"{key} (this run's)")
        elif tuple(saved.shape) != tuple(tensor.shape):
            fresh.append(f"{key} (shape {tuple(saved.shape)} there, {tuple(tensor.shape)} here)")
        else:
            loaded[key] = saved.to(tensor.dtype)
    if not loaded:
        raise ConfigError(f"init_from={path}: none of its weights fit this run's model (its "
                          f"tensors: {', '.join(list(source)[:5])}...); start from a checkpoint "
                          "of the same kind of model")
    model.load_state_dict({**target, **loaded})
    unused = sorted(set(source) - set(target))
    log.info("init_from %s: %d of %d tensors taken; fresh: %s%s", path, len(loaded), len(target),
             ", ".join(fresh) or "none", f"; not used: {', '.join(unused)}" if unused else "")
    changed = model_changes(payload.get("config", {}).get("model", {}), config.get("model", {}))
    if changed:
        log.warning("init_from %s: this run's model settings differ from the checkpoint's: %s",
                    path, "; ".join(changed))
    return {"init_from": str(path), "init_tensors": len(loaded), "init_fresh": len(fresh)}


def model_changes(saved: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for each model setting that differs."""
    before, after = dict(flat(saved, "model")), dict(flat(new, "model"))
    return [f"{key}: {before.get(key)!r} -> {value!r}" for key, value in after.items()
            if before.get(key, value) != value]
