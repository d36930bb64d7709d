"""One entry point for every topology's checkpoint: text lines in, one output line per input line.

translate: a translation; classify: the class; tag: one tag per word (a joint model: the class, a
tab, the tags); generate: an utterance for the class named on the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

from seq2seq.errors import CheckpointError
from seq2seq.training.checkpoint import checkpoint_task, load_checkpoint

Predict = Callable[[Sequence[str], int], list[str]]  # (lines, line_offset) -> output lines


def load_predictor(path: str | Path | Sequence[str | Path], beam: Optional[int] = None,
                   batch_size: Optional[int] = None, temperature: Optional[float] = None,
                   top_k: Optional[int] = None, length_penalty: Optional[float] = None,
                   precision: Optional[str] = None) -> Predict:
    """The predictor of a checkpoint, or of an ensemble of translation checkpoints."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    path = paths[0]
    payload = load_checkpoint(path)  # read once, whichever kind it is
    task = checkpoint_task(payload)
    if len(paths) > 1 and task != "translate":
        raise CheckpointError(f"{path}: a {task} checkpoint; only translation checkpoints make "
                              "ensembles")
    if task in ("classify", "tag"):
        from seq2seq.topologies.labelling import Labeller
        labeller = Labeller.from_checkpoint(path, payload=payload)
        return lambda lines, offset=0: labeller.predict(lines, line_offset=offset)
    if task == "generate":
        from seq2seq.topologies.generation import Generator
        generator = Generator.from_checkpoint(path, payload=payload, temperature=temperature,
                                              top_k=top_k)
        return lambda lines, offset=0: generator.generate(lines, line_offset=offset)
    from seq2seq.translate import Translator
    translator = Translator.from_checkpoints(paths, payload, beam=beam, batch_size=batch_size,
                                             length_penalty=length_penalty, precision=precision)
    return lambda lines, offset=0: translator.translate(lines, line_offset=offset)
