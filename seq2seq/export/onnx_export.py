"""Export a translation checkpoint as ONNX graphs plus what search needs, in one folder.

    DIR/manifest.json   format, version, graph files and the names of their inputs and outputs
    DIR/encoder.onnx    src [B, S], src_len [B] -> the decoder's memory and initial state
    DIR/step.onnx       one decoder step: prev [N] + state -> log_probs [N, K], the next state
    DIR/search.pt       a weights-only checkpoint without weights: config (search settings,
                        input length), SentencePiece models, recaser, the scored ids

Batch and source length are dynamic axes of both graphs. ``seq2seq.export.onnx_runtime`` decodes a
folder with onnxruntime through ``seq2seq.search`` and ``seq2seq.translate.Translator``, as the
checkpoint decodes with torch.

The graphs go through the TorchScript exporter (``dynamo=False``): it maps ``torch.nn``'s RNNs to
ONNX's own GRU/LSTM/RNN operators, takes dynamic axes by input name and exports a model in about a
second; the torch.export-based exporter took 10 s for a one-layer GRU alone and fixed the source
length of its outputs' shapes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor

from seq2seq import __version__
from seq2seq.atomic import UMASK, atomic_file
from seq2seq.errors import CheckpointError
from seq2seq.export.graphs import RECURRENT, EncoderGraph, StepGraph
from seq2seq.export.onnx_runtime import FORMAT, MANIFEST, VERSION
from seq2seq.models.encoder_decoder import EncoderDecoder
from seq2seq.tokenization import BOS, EOS
from seq2seq.topologies.registry import checkpoint_topology
from seq2seq.training.checkpoint import load_model_checkpoint, save_checkpoint
from seq2seq.translate import model_from_checkpoint

OPSET = 17
EXPORTS = ("translate",)  # the topologies an export supports

# Which axes of each named tensor are dynamic: N rows (sentences x beams), S source positions.
AXES: dict[str, dict[int, str]] = {
    "src": {0: "N", 1: "S"}, "src_len": {0: "N"}, "prev": {0: "N"},
    "states": {0: "N", 1: "S"}, "keys": {0: "N", 1: "S"}, "mask": {0: "N", 1: "S"},
    "summary": {0: "N"}, "hidden": {1: "N"}, "cell": {1: "N"}, "feed": {0: "N"},
    "log_probs": {0: "N"}, "attention": {0: "N", 1: "S"}}


def axes(names: list[str]) -> dict[str, dict[int, str]]:
    """The dynamic axes of ``names`` (a step's ``next_hidden`` has those of ``hidden``)."""
    return {name: AXES[name.removeprefix("next_")] for name in names}


def example_batch(vocab_size: int) -> tuple[Tensor, Tensor]:
    """Two right-padded sentences of different lengths: the trace sees padding and no size of 1
    that it could take for a constant."""
    ids = torch.arange(4, 4 + 7) % max(vocab_size, 5)
    ids[ids < 4] = 4  # no special id inside a sentence
    src = torch.stack([torch.cat([ids[:6], torch.tensor([EOS])]),
                       torch.cat([ids[:3], torch.tensor([EOS, 0, 0, 0])])])
    return src, torch.tensor([7, 4])


def export_graphs(model: EncoderDecoder, folder: Path, where: str) -> dict[str, Any]:
    """Write ``encoder.onnx`` and ``step.onnx`` of ``model`` into ``folder``; return the manifest
    entries naming their inputs and outputs."""
    encoder = EncoderGraph(model, where).eval()
    src, src_len = example_batch(model.encoder.embedding.num_embeddings)
    encoder_names = encoder.output_names()
    with torch.no_grad():
        encoded = encoder(src, src_len)
    step = StepGraph(model, encoder_names).eval()
    prev = torch.full((src.size(0),), BOS, dtype=torch.long)
    step_names = step.output_names()
    with warnings.catch_warnings():
        # The TorchScript exporter's deprecation notice and its tracer's warnings about Python
        # values (the step's fixed length of 1) say nothing about this export.
        warnings.simplefilter("ignore")
        torch.onnx.export(encoder, (src, src_len), str(folder / "encoder.onnx"), dynamo=False,
                          input_names=["src", "src_len"], output_names=encoder_names,
                          dynamic_axes=axes(["src", "src_len", *encoder_names]),
                          opset_version=OPSET)
        torch.onnx.export(step, (prev, *encoded), str(folder / "step.onnx"), dynamo=False,
                          input_names=step.input_names, output_names=step_names,
                          dynamic_axes=axes([*step.input_names, *step_names]), opset_version=OPSET)
    return {"encoder": {"file": "encoder.onnx", "inputs": ["src", "src_len"],
                        "outputs": encoder_names},
            "step": {"file": "step.onnx", "inputs": step.input_names, "outputs": step_names,
                     "recurrent": [name for name in RECURRENT if name in encoder_names]}}


def search_payload(payload: dict[str, Any], model: EncoderDecoder) -> dict[str, Any]:
    """What search and the translator read besides the graphs (no weights)."""
    kept = {"config": payload["config"], "tokenizers": payload["tokenizers"]}
    if payload.get("recaser"):
        kept["recaser"] = payload["recaser"]
    if model.decoder.output_ids is not None:
        kept["output_ids"] = model.decoder.output_ids.detach().cpu().clone()
    return kept


def is_export(folder: Path) -> bool:
    """Whether ``folder`` holds an earlier export: a manifest of this format, not merely a file
    called manifest.json (web apps have one), so replacing it never removes someone's folder."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT


def export_onnx(checkpoint: str | Path, out: str | Path) -> Path:
    """Export ``checkpoint`` (a translation checkpoint or release) into the folder ``out``, which
    must be absent, empty or an earlier export (replaced whole: the new folder is written beside
    it and swapped in, so a failed export leaves the old one)."""
    checkpoint, out = Path(checkpoint), Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not is_export(out))):
        raise CheckpointError(f"--out {out}: exists and is not an earlier export (no {MANIFEST} "
                              f"of format {FORMAT}); name a new folder")
    payload = load_model_checkpoint(checkpoint)
    topology = checkpoint_topology(payload)
    if topology.name not in EXPORTS:
        raise CheckpointError(f"{checkpoint}: a {topology.name} checkpoint; seq2seq-export --format "
                              f"onnx exports {', '.join(EXPORTS)} checkpoints only (an "
                              "encoder-decoder: its encoder and one decoder step)")
    model = cast(EncoderDecoder, model_from_checkpoint(payload)[0])
    model.float()  # a bf16/fp16 release loads into fp32 parameters already; the graphs are fp32
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        os.chmod(staging, 0o777 & ~UMASK)  # a plain mkdir's mode, not mkdtemp's private 0700
        graphs = export_graphs(model, staging, str(checkpoint))
        save_checkpoint(staging / "search.pt", search_payload(payload, model))
        manifest = {"format": FORMAT, "version": VERSION, "topology": topology.name,
                    "source": checkpoint.name, "release": payload.get("release"),
                    "opset": OPSET, "torch": torch.__version__, "seq2seq": __version__,
                    "search": "search.pt", **graphs}
        with atomic_file(staging / MANIFEST) as handle:
            json.dump(manifest, handle, indent=2)
        swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def swap_in(staging: Path, out: Path) -> None:
    """Put the folder ``staging`` at ``out``, replacing an earlier export there."""
    if not out.exists():
        os.replace(staging, out)
        return
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)
