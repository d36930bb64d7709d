"""Checkpoints: written atomically, recognised on load, enough on their own to translate.

A checkpoint holds the model weights, the composed config (to rebuild the model), the tokenizers'
SentencePiece models, and the optimizer/scheduler/trainer state to resume training.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from seq2seq.atomic import atomic_file
from seq2seq.config import LEGACY_TOPOLOGY_RUNS, MODEL_PRESETS, TOPOLOGY_CLASSES
from seq2seq.errors import CheckpointError
from seq2seq.tokenization import SentencePieceTokenizer

FORMAT = "seq2seq-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically: a temporary file in the same folder, flushed to
    disk, then renamed over the target, so a kill at any moment leaves the old file intact. A full
    disk is a CheckpointError saying so (the old file is still intact, no temporary is left)."""
    try:
        with atomic_file(path, "wb", fsync=True) as handle:
            torch.save({"format": FORMAT, "version": VERSION, **payload}, handle)
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        raise CheckpointError(f"{path}: no space left on the device to write it (the previous "
                              "version, if any, is intact); free some space, or keep fewer step "
                              "checkpoints (trainer.keep_checkpoints)") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``; CheckpointError if it is not one. Its
    tensors are put on ``map_location`` (the CPU: a checkpoint saved on a GPU loads anywhere;
    ``load_state_dict`` then copies the weights onto the model's device)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"{path}: cannot read checkpoint (truncated or not a seq2seq "
                              f"checkpoint): {type(err).__name__}: {err}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a seq2seq checkpoint (expected format {FORMAT!r})")
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload['version']} is newer than "
                              f"this seq2seq supports ({VERSION})")
    if not isinstance(payload.get("config"), dict):
        raise CheckpointError(f"{path}: the checkpoint holds no config (expected the run's "
                              "composed config under 'config')")
    check_stored_config(payload["config"], path)
    return payload


def load_model_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                          ) -> dict[str, Any]:
    """``load_checkpoint`` for a tool that runs the model: the weights and readable SentencePiece
    models must be there too; a CheckpointError names the file and the missing or broken key."""
    payload = load_checkpoint(path, map_location)
    for key in ("model", "tokenizers"):
        if not isinstance(payload.get(key), dict):
            raise CheckpointError(f"{path}: the checkpoint has no {key!r} (expected the model's "
                                  "weights and its SentencePiece models)")
    for side in ("src", "tgt"):
        try:
            SentencePieceTokenizer(payload["tokenizers"][side])
        except Exception as err:  # sentencepiece raises RuntimeError or TypeError on junk
            raise CheckpointError(f"{path}: tokenizers.{side} is not a SentencePiece model "
                                  f"({type(err).__name__}: {err})") from None
    return payload


def check_stored_config(config: dict[str, Any], path: Path) -> None:
    """Refuse a stored config that would run code of its choosing when built (tools build the
    model and the topology from it with Hydra, which imports whatever a ``_target_`` names): the
    model's ``_target_``s must be exactly its classes (``MODEL_TARGETS``), the topology's exactly
    a built-in topology with nothing built inside it, any other one a name of this package; and no
    value may be an interpolation (a stored config holds resolved values). Checked over the whole
    tree before anything is built; the CheckpointError names the key."""
    def walk(node: Any, key: str) -> None:
        if isinstance(node, dict):
            for name, value in node.items():
                child = f"{key}.{name}" if key else str(name)
                if name == "_target_":
                    check_target(child, value)
                walk(value, child)
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                walk(value, f"{key}[{i}]")
        elif isinstance(node, str) and "${" in node:
            raise CheckpointError(f"{path}: config key {key}={node!r} is an interpolation; a "
                                  "checkpoint's config holds resolved values only")

    def check_target(key: str, target: Any) -> None:
        # Exact names: Hydra walks a target's dots through attributes, so a prefix would let
        # "seq2seq.models.encoder.torch.serialization.os.system" through.
        if key.startswith("model."):
            allowed, what = MODEL_TARGETS, "this package's model classes"
        elif key.startswith("topology."):
            allowed = TOPOLOGY_TARGETS if key == "topology._target_" else frozenset()
            what = "a built-in topology, and nothing inside it"
        else:  # never built from a checkpoint; still only names of this package
            allowed, what = None, "names of this package"
        if not isinstance(target, str) or (target not in allowed if allowed is not None
                                           else not target.startswith("seq2seq.")):
            raise CheckpointError(f"{path}: config key {key}={target!r}: a checkpoint may only "
                                  f"build {what} there; it never imports other code")

    walk(config, "")


# What a stored config's ``_target_`` may name where the tools build it.
MODEL_TARGETS = frozenset(MODEL_PRESETS)
TOPOLOGY_TARGETS = frozenset(TOPOLOGY_CLASSES.values()) | LEGACY_TOPOLOGY_RUNS


class CheckpointDir:
    """``best.pt``, ``last.pt`` and the ``keep`` most recent ``step_N.pt`` of a run."""

    def __init__(self, folder: str | Path, keep: int = 2) -> None:
        self.folder, self.keep = Path(folder), keep

    @property
    def last(self) -> Path:
        return self.folder / "last.pt"

    @property
    def best(self) -> Path:
        return self.folder / "best.pt"

    def save_last(self, payload: dict[str, Any], step: int) -> Path:
        """Write last.pt; keep a copy as step_N.pt and drop the oldest beyond ``keep``."""
        save_checkpoint(self.last, payload)
        if self.keep > 0:
            numbered = self.folder / f"step_{step}.pt"
            tmp = self.folder / f".{numbered.name}.tmp"
            tmp.unlink(missing_ok=True)
            try:
                os.link(self.last, tmp)  # same bytes, no second write
            except OSError:  # no hard links on this file system
                shutil.copyfile(self.last, tmp)
            os.replace(tmp, numbered)
            for old in self.numbered()[: -self.keep]:
                old.unlink(missing_ok=True)
        return self.last

    def numbered(self) -> list[Path]:
        """step_N.pt files, oldest first (a stray step_best.pt or step_1.pt.bak is not one)."""
        steps = [(int(match.group(1)), path) for path in self.folder.glob("step_*.pt")
                 if (match := re.fullmatch(r"step_(\d+)\.pt", path.name))]
        return [path for _, path in sorted(steps)]
