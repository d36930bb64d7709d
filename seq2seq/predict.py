"""One entry point for every topology's checkpoint: text lines in, one output line per input line.

translate: a translation; classify: the class; tag: one tag per word (a joint model: the class, a
tab, the tags); generate: an utterance for the class named on the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from seq2seq.export.onnx_runtime import load_exported
from seq2seq.topologies.base import PredictOptions, Predictor
from seq2seq.topologies.registry import checkpoint_topology
from seq2seq.training.checkpoint import load_model_checkpoint


def load_predictor(path: str | Path | Sequence[str | Path],
                   options: PredictOptions = PredictOptions()) -> Predictor:
    """The predictor of a checkpoint, or of an ensemble of checkpoints (translation only), built
    by the topology the (first) checkpoint names; or of a folder exported by seq2seq-export."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if Path(paths[0]).is_dir():  # a folder written by seq2seq-export
        return load_exported(paths, options)
    payload = load_model_checkpoint(paths[0])  # read once
    return checkpoint_topology(payload).load_predictor(payload, paths, options)
