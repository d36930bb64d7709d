"""What a classifier or tagger is trained on and how its outputs are decoded and scored: the loss,
one prediction pass (BIO-constrained Viterbi, joint class + tag decoding, a multi-label
classifier's thresholds), and the objective."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.data.labelled import (
    IGNORE,
    LabelledBatch,
    LabelledBatches,
    LabelledSplit,
    LabelVocab,
    split_labels,
)
from seq2seq.data.word_tables import WordTables
from seq2seq.device import model_device, to_device
from seq2seq.evaluation.labels import classification_scores, multi_label_scores, slot_scores
from seq2seq.models.crf import CRF
from seq2seq.models.tag_decoding import ClassSlots, bio_transitions, class_tag_scores, joint_decode, viterbi
from seq2seq.tokenization import SentencePieceTokenizer, TokenizerPair


def model_outputs(model: nn.Module, batch: LabelledBatch) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """(class logits [B, L] or None, tag logits [B, W, T] or None), whichever the model gives."""
    out = model(batch.src, batch.src_len, batch.word_starts, batch.word_ends, batch.word_bytes,
                batch.word_lexicon, batch.word_ids)
    if isinstance(out, Tensor):
        return out, None
    return out.label_logits, out.tag_logits


def multi_label_loss(logits: Tensor, targets: Tensor, smoothing: float = 0.0) -> Tensor:
    """Binary cross-entropy of one sigmoid per label, summed over the batch and the labels.
    logits, targets: [B, L], targets 1.0 on the gold labels. ``smoothing`` moves each target
    that far towards 1/2 (label smoothing of a two-way softmax, which a sigmoid is)."""
    soft = targets * (1.0 - smoothing) + 0.5 * smoothing
    return F.binary_cross_entropy_with_logits(logits, soft, reduction="sum")


def threshold_decode(logits: Tensor, threshold: float) -> list[list[int]]:
    """A multi-label classifier's predictions: the ids, ascending (the label vocabulary's order),
    of every label whose probability is above ``threshold``; when none is, the most likely one,
    since every utterance has at least one label. logits: [B, L]."""
    chosen = torch.sigmoid(logits.float()) > threshold                         # [B, L]
    chosen[torch.arange(logits.size(0)), logits.argmax(-1)] |= ~chosen.any(-1)
    return [row.nonzero().flatten().tolist() for row in chosen]


def labelling_loss(label_logits: Optional[Tensor], tag_logits: Optional[Tensor],
                   batch: LabelledBatch, smoothing: float, crf: Optional[CRF] = None,
                   class_weight: float = 1.0) -> Tensor:
    """Cross-entropy summed over the batch's gold classes and gold word tags (none: 0); with a
    ``crf``, the tags' loss is the negative log-likelihood of each gold tag sequence; with gold
    label sets (a multi-label classifier), the binary cross-entropy of each label. A joint
    model's class term is multiplied by ``class_weight``."""
    logits = label_logits if label_logits is not None else tag_logits
    total = torch.zeros((), device=None if logits is None else logits.device)
    if label_logits is not None and batch.label_sets is not None:
        total = total + class_weight * multi_label_loss(label_logits, batch.label_sets, smoothing)
    elif label_logits is not None and bool((batch.labels != IGNORE).any()):
        total = total + class_weight * F.cross_entropy(
            label_logits, batch.labels, ignore_index=IGNORE, reduction="sum",
            label_smoothing=smoothing)
    if tag_logits is not None and crf is not None:
        total = total + crf.nll(tag_logits, batch.tags, batch.word_mask)
    elif tag_logits is not None:
        total = total + F.cross_entropy(tag_logits.reshape(-1, tag_logits.size(-1)),
                                        batch.tags.reshape(-1), ignore_index=IGNORE,
                                        reduction="sum", label_smoothing=smoothing)
    return total


def joint_decoding_scores(slots: Optional[ClassSlots], labels: LabelVocab,
                          tags: Optional[LabelVocab]) -> Optional[Tensor]:
    """``class_tag_scores`` for a model's classes and tags; None (independent decoding) without
    a class/slot table or without tags."""
    return class_tag_scores(slots, labels.names, tags.names) if slots and tags else None


class Predictions(NamedTuple):
    labels: Optional[list[int]]        # class ids, when the model predicts classes
    tags: Optional[list[list[int]]]    # tag ids per word, when it tags
    loss: float                        # cross-entropy summed over the gold units the batches hold
    units: int                         # those gold units
    label_sets: Optional[list[list[int]]] = None  # a multi-label classifier's label ids, ascending


def predict(model: nn.Module, batches: LabelledBatches, tag_names: Optional[Sequence[str]] = None,
            allowed: Optional[Tensor] = None) -> Predictions:
    """Predicted class ids and per-word tag ids of every utterance, in corpus order, and the loss
    on whatever gold labels the batches carry, from one pass. With ``tag_names`` in BIO form, tags
    are decoded under BIO constraints (Viterbi), so that no slot starts with an ``I-`` tag;
    otherwise each word takes its most likely tag. With ``allowed`` ([C, T], ``class_tag_scores``)
    and a model that gives both, the class and the tags are decoded jointly (``joint_decode``).
    A multi-label classifier (``model.multi_label``) gives label sets (``threshold_decode``)."""
    model.eval()
    multi_label = bool(getattr(model, "multi_label", False))
    label_sets: list[list[int]] = []
    # (start [T], moves [T, T], end [T] or None): BIO rules, plus a CRF's learned scores
    constraints: Optional[tuple[Tensor, Tensor, Optional[Tensor]]] = None
    if tag_names:
        constraints = (*bio_transitions(tag_names), None)
    crf: Optional[CRF] = getattr(model, "crf", None)
    if crf is not None:
        start, moves, end = crf.decoding_scores(*(constraints[:2] if constraints else ()))
        constraints = (start.cpu(), moves.cpu(), end.cpu())
    labels: list[int] = []
    tags: list[list[int]] = []
    loss, units = 0.0, 0
    device = model_device(model)
    with torch.inference_mode():
        for batch in batches.in_order():
            moved = to_device(batch, device)
            label_logits, tag_logits = model_outputs(model, moved)
            loss += float(labelling_loss(label_logits, tag_logits, moved, 0.0, crf))
            units += batch.num_tgt_tokens
            # Decoding runs on the host (Viterbi walks word by word), beside the host batch.
            label_logits = None if label_logits is None else label_logits.cpu()
            tag_logits = None if tag_logits is None else tag_logits.cpu()
            if tag_logits is not None and constraints is not None:
                # A CRF's emissions are scores already; plain tag logits become log-probabilities.
                scores = tag_logits if crf is not None else torch.log_softmax(tag_logits, -1)
                if label_logits is not None and allowed is not None:
                    batch_labels, batch_tags = joint_decode(
                        label_logits, scores, batch.word_mask, *constraints, allowed)
                    labels += batch_labels
                    tags += batch_tags
                    continue
                tags += viterbi(scores, batch.word_mask, *constraints)
            elif tag_logits is not None:
                best = tag_logits.argmax(-1)
                tags += [row[:n].tolist() for row, n in zip(best, batch.word_mask.sum(1), strict=True)]
            if label_logits is not None and multi_label:
                label_sets += threshold_decode(label_logits, float(getattr(model, "threshold", 0.5)))
            elif label_logits is not None:
                labels += label_logits.argmax(-1).tolist()
    return Predictions(labels or None, tags or None, loss, units, label_sets or None)


def score_predictions(predictions: Predictions, split: LabelledSplit, labels: LabelVocab,
                      tags: Optional[LabelVocab], with_details: bool = True) -> dict[str, Any]:
    """Accuracy/macro-F1 (when the model predicts classes; exact-match accuracy, micro- and
    macro-F1 over labels when it predicts label sets) and slot F1 (when it tags)."""
    label_ids, tag_ids = predictions.labels, predictions.tags
    scores: dict[str, Any] = {}
    if predictions.label_sets is not None and split.labels is not None:
        gold = split_labels(split.labels, split.files.get("labels", ""))
        names = labels.names + sorted({g for row in gold for g in row} - set(labels.names))
        scores.update(multi_label_scores(gold, [labels.decode(ids) for ids in
                                                predictions.label_sets], names))
    if label_ids is not None and split.labels is not None:
        classes = labels.names + sorted(set(split.labels) - set(labels.names))
        scores.update(classification_scores(split.labels, labels.decode(label_ids), classes))
    if tag_ids is not None and split.tags is not None and tags is not None:
        scores.update(slot_scores(split.tags, [tags.decode(t) for t in tag_ids]))
    if not with_details:
        scores = {k: v for k, v in scores.items() if isinstance(v, float)}
    return scores


class LabellingObjective:
    """Cross-entropy on the classes and/or the word tags; validated by accuracy and slot F1
    (``multi_label``: binary cross-entropy on each label; exact-match accuracy, micro-F1 and
    macro-F1 over labels)."""

    def __init__(self, valid: LabelledBatches, labels: LabelVocab, tags: Optional[LabelVocab],
                 tokenizer: SentencePieceTokenizer, valid_split: LabelledSplit,
                 slots: Optional[ClassSlots], tables: WordTables, class_loss_weight: float,
                 multi_label: bool = False) -> None:
        self.valid, self.labels, self.tags = valid, labels, tags
        self.tokenizer, self.valid_split, self.slots = tokenizer, valid_split, slots
        self.tables, self.class_loss_weight = tables, class_loss_weight
        self.allowed = joint_decoding_scores(slots, labels, tags)
        self.metrics = ("loss", "accuracy") + (("micro_f1",) if multi_label else ()) \
            + ("macro_f1",) + (("slot_f1",) if tags else ())

    def loss(self, model: nn.Module, batch: LabelledBatch, teacher_forcing: float,
             smoothing: float) -> Tensor:
        return labelling_loss(*model_outputs(model, batch), batch, smoothing,
                              getattr(model, "crf", None), self.class_loss_weight)

    def validate(self, model: nn.Module) -> dict[str, float]:
        predictions = predict(model, self.valid, self.tags.names if self.tags else None,
                              self.allowed)
        metrics = {"loss": predictions.loss / max(predictions.units, 1)}
        metrics.update(score_predictions(predictions, self.valid_split, self.labels, self.tags,
                                         with_details=False))
        return metrics

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"tokenizers": TokenizerPair(self.tokenizer, self.tokenizer).state_dict(),
                "labels": self.labels.names, "tags": None if self.tags is None else self.tags.names,
                "class_slots": self.slots, **self.tables.state_dict()}
