"""``Labeller``: a classify or tag checkpoint loaded once, labelling lists of utterances."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from omegaconf import DictConfig, OmegaConf
from torch import nn

from seq2seq.config import build, stored_model_config
from seq2seq.data.labelled import LabelledSplit, LabelVocab, join_labels
from seq2seq.data.word_tables import WordTables
from seq2seq.device import resolve_device
from seq2seq.models.tag_decoding import ClassSlots
from seq2seq.tokenization import SentencePieceTokenizer, TokenizerPair
from seq2seq.topologies.labelling.data import evaluation_batches, tags_model
from seq2seq.topologies.labelling.inference import Predictions, joint_decoding_scores, predict


def build_labelling_model(model_cfg: DictConfig | dict, vocab_size: int, num_labels: int,
                          num_tags: int, tables: WordTables) -> nn.Module:
    """The ``model`` config built for a vocabulary, a class set and a tag set (a tagger) or a
    class set (a classifier)."""
    if isinstance(model_cfg, dict):
        model_cfg = OmegaConf.create(model_cfg)
    if tags_model(model_cfg):
        return build(model_cfg, src_vocab_size=vocab_size, num_tags=num_tags, num_labels=num_labels,
                     num_lexicon=tables.num_lexicon, num_words=tables.num_words)
    return build(model_cfg, src_vocab_size=vocab_size, num_labels=num_labels)


class Labeller:
    """A classify or tag model with its tokenizer, class and tag names; labels utterances.

    >>> Labeller.from_checkpoint(load_checkpoint("outputs/.../best.pt")).predict(["play some jazz"])
    """

    def __init__(self, model: nn.Module, tokenizer: SentencePieceTokenizer, outputs_tags: bool,
                 labels: LabelVocab, tags: Optional[LabelVocab],
                 slots: Optional[ClassSlots] = None, tables: WordTables = WordTables()) -> None:
        """``outputs_tags``: a tag model prints the tags (after the class, for a joint model); a
        classify model prints the class only, even when it was trained on the tags too."""
        self.model, self.tokenizer, self.outputs_tags = model.eval(), tokenizer, outputs_tags
        self.labels, self.tags, self.tables = labels, tags, tables
        # Joint class + tag decoding, when the checkpoint was trained with it.
        self.allowed = joint_decoding_scores(slots, labels, tags)

    @classmethod
    def from_checkpoint(cls, payload: dict[str, Any], outputs_tags: bool,
                        device: Optional[str] = None) -> "Labeller":
        """The labeller of a loaded classify or tag checkpoint, on ``device``
        (``seq2seq/device.py``; None: auto)."""
        where = resolve_device(device, "device")
        config = OmegaConf.create(payload["config"])
        tokenizer = TokenizerPair.from_state_dict(payload["tokenizers"]).src
        labels = LabelVocab(payload["labels"])
        tags = LabelVocab(payload["tags"]) if payload.get("tags") else None
        tables = WordTables.from_state_dict(payload)
        model = build_labelling_model(stored_model_config(config.model), tokenizer.vocab_size,
                                      len(labels), len(tags) if tags else 0, tables)
        model.load_state_dict(payload["model"])
        model.to(where)
        return cls(model, tokenizer, outputs_tags, labels, tags, payload.get("class_slots"), tables)

    @property
    def multi_label(self) -> bool:
        """Whether the model predicts label sets (``model.multi_label``), printed ``#``-joined."""
        return bool(getattr(self.model, "multi_label", False))

    @property
    def tag_names(self) -> Optional[list[str]]:
        return self.tags.names if self.tags else None

    def predictions(self, split: LabelledSplit) -> Predictions:
        """One pass over the utterances of ``split`` (their gold labels are not read)."""
        batches = evaluation_batches(split, self.tokenizer, self.tables)
        return predict(self.model, batches, self.tag_names, self.allowed)

    def predicted_names(self, predictions: Predictions) -> dict[str, list]:
        """The predictions by name: {"label": a class per utterance (a multi-label model's labels
        ``#``-joined, in the label vocabulary's order), "tags": a tag list per utterance}, with
        the kinds the model predicts."""
        names: dict[str, list] = {}
        if predictions.labels is not None:
            names["label"] = self.labels.decode(predictions.labels)
        if predictions.label_sets is not None:
            names["label"] = [join_labels(self.labels.decode(ids)) for ids in predictions.label_sets]
        if predictions.tags is not None and self.tags is not None:
            names["tags"] = [self.tags.decode(ids) for ids in predictions.tags]
        return names

    def predict(self, lines: Sequence[str], line_offset: int = 0) -> list[str]:
        """One output line per utterance: its class (classify; a multi-label model's labels
        ``#``-joined), or one tag per word (tag; with a joint model, the class, a tab, then the
        tags). A blank utterance gives an empty line."""
        words = [u.split() for u in lines]
        filled = [i for i, w in enumerate(words) if w]
        out = [""] * len(lines)
        if not filled:
            return out
        split = LabelledSplit([words[i] for i in filled], None, None, {})
        names = self.predicted_names(self.predictions(split))
        for k, i in enumerate(filled):
            parts = []
            if "label" in names:
                parts.append(names["label"][k])
            if "tags" in names and self.outputs_tags:
                parts.append(" ".join(names["tags"][k]))
            out[i] = "\t".join(parts)
        return out
