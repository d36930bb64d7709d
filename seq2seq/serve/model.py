"""The served checkpoint: its predictor, run on batches of lines for the routes.

``outputs`` gives exactly the lines ``seq2seq-translate`` prints; ``analyses`` adds what the web
page shows: the pieces and attention of a translation, the words with their tags, or the class.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from seq2seq.data.labelled import LabelledSplit
from seq2seq.errors import ConfigError
from seq2seq.topologies.base import PredictOptions, Predictor
from seq2seq.topologies.labelling.predictor import Labeller
from seq2seq.topologies.registry import checkpoint_topology
from seq2seq.training.checkpoint import load_model_checkpoint
from seq2seq.translate import Translator

EOS_PIECE = "</s>"  # the end of sentence, a row and a column of the attention table

OUTPUTS, ANALYSES = "outputs", "analyses"  # the two kinds of batch a ServedModel runs


@dataclass(frozen=True)
class BatchKey:
    """What requests must share to run in one batch: the kind of result and the beam."""

    kind: str
    beam: Optional[int]


class ServedModel:
    """A loaded checkpoint (or an ensemble of translation checkpoints) and its topology."""

    def __init__(self, predictor: Predictor, topology: str, name: str) -> None:
        self.predictor, self.topology, self.name = predictor, topology, name

    @classmethod
    def load(cls, paths: Sequence[str | Path], options: PredictOptions = PredictOptions()
             ) -> "ServedModel":
        """The predictor ``seq2seq.predict.load_predictor`` builds for ``paths`` and ``options``,
        with the name of its topology."""
        payload = load_model_checkpoint(paths[0])
        topology = checkpoint_topology(payload)
        predictor = topology.load_predictor(payload, list(paths), options)
        return cls(predictor, topology.name, ", ".join(Path(p).name for p in paths))

    @property
    def default_beam(self) -> Optional[int]:
        """The beam a request without one gets (None: the topology does not search)."""
        return self.predictor.search.beam if isinstance(self.predictor, Translator) else None

    def batch_key(self, kind: str, beam: Optional[int]) -> BatchKey:
        """The key of a request: its beam matters only to a translation model."""
        if kind not in (OUTPUTS, ANALYSES):
            raise ConfigError(f"batch kind {kind!r}: expected {OUTPUTS} or {ANALYSES}")
        if self.default_beam is None:
            return BatchKey(kind, None)
        return BatchKey(kind, beam or self.default_beam)

    def run(self, key: Hashable, lines: list[str]) -> list[Any]:
        """One batch (``Batcher``'s function, in its worker thread): output lines, or analyses."""
        if not isinstance(key, BatchKey):
            raise ConfigError(f"batch key {key!r}: expected a BatchKey")
        with torch.inference_mode():
            if key.kind == OUTPUTS:
                return self.outputs(lines, key.beam)
            return self.analyses(lines, key.beam)

    def outputs(self, lines: Sequence[str], beam: Optional[int] = None) -> list[str]:
        """One line per input line, as ``seq2seq-translate`` prints it."""
        if isinstance(self.predictor, Translator):
            texts = self.predictor.translate(lines, beam=beam)
        else:
            texts = self.predictor.predict(lines)
        return [text.replace("\n", " ") for text in texts]

    def analyses(self, lines: Sequence[str], beam: Optional[int] = None) -> list[dict[str, Any]]:
        """Per line: ``output`` (the printed line) and what the model saw and gave: for a
        translation the source and output pieces with the attention [output + EOS, source + EOS];
        for a classifier or tagger the words, their tags and the class."""
        if isinstance(self.predictor, Translator):
            return self._translation_analyses(self.predictor, lines, beam)
        outputs = self.outputs(lines)
        if isinstance(self.predictor, Labeller):
            return self._labelling_analyses(self.predictor, lines, outputs)
        return [{"output": output} for output in outputs]

    @staticmethod
    def _translation_analyses(translator: Translator, lines: Sequence[str], beam: Optional[int]
                              ) -> list[dict[str, Any]]:
        found = translator.translate_detailed(lines, beam, return_attention=True)
        out = []
        for t in found:
            item: dict[str, Any] = {"output": t.text.replace("\n", " ")}
            if t.src_pieces:  # a blank line was not translated
                item.update(source_pieces=[*t.src_pieces, EOS_PIECE],
                            target_pieces=[*t.hyp_pieces, EOS_PIECE], score=round(t.score, 4))
                if t.attention is not None:
                    item["attention"] = [[round(float(w), 4) for w in row]
                                         for row in t.attention.float().cpu()]
            out.append(item)
        return out

    @staticmethod
    def _labelling_analyses(labeller: Labeller, lines: Sequence[str], outputs: list[str]
                            ) -> list[dict[str, Any]]:
        words = [line.split() for line in lines]
        filled = [i for i, w in enumerate(words) if w]
        out: list[dict[str, Any]] = [{"output": output, "words": w} for output, w in zip(outputs, words)]
        if not filled:
            return out
        split = LabelledSplit([words[i] for i in filled], None, None, {})
        names = labeller.predicted_names(labeller.predictions(split))
        for k, i in enumerate(filled):
            if "label" in names:
                out[i]["label"] = names["label"][k]
            if "tags" in names and labeller.outputs_tags:
                out[i]["tags"] = names["tags"][k]
        return out
