"""N vs 1 (``topology=classify``: one class per utterance, e.g. SNIPS intents) and N vs N
(``topology=tag``: one BIO tag per word, e.g. SNIPS slots; ``model.joint=true`` also predicts the
class), on a labelled corpus (``data/labelled.py``).

data.py: the corpus, tokenizer, word tables and training copies · inference.py: loss, decoding,
scores, objective · predictor.py: ``Labeller`` · report.py: the report and prediction files.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar, Optional, Sequence

from omegaconf import DictConfig

from seq2seq.data.corpus import read_aligned, read_lines
from seq2seq.data.labelled import (
    LabelledBatches,
    LabelledCorpus,
    LabelledSplit,
    LabelVocab,
    check_one_tag_per_word,
)
from seq2seq.errors import ConfigError
from seq2seq.evaluation.labels import classification_scores, slot_scores
from seq2seq.evaluation.report import line_count
from seq2seq.models import count_parameters
from seq2seq.models.pretrained import load_pretrained_embeddings
from seq2seq.models.tag_decoding import class_slots
from seq2seq.topologies.base import EvaluationRequest, PredictOptions, TrainingSetup, no_ensemble
from seq2seq.topologies.labelling.data import (
    MAX_PIECES_PER_WORD,
    encode_labels,
    file_lines,
    label_vocabulary,
    multi_label_model,
    prepare_labelled,
    tags_model,
    training_utterances,
)
from seq2seq.topologies.labelling.inference import LabellingObjective
from seq2seq.topologies.labelling.predictor import Labeller, build_labelling_model
from seq2seq.topologies.labelling.report import (
    add_confusion_png,
    labelling_report,
    summary_lines,
    write_labelling_report,
)
from seq2seq.training.distributed import Distributed

log = logging.getLogger(__name__)

OUTSIDE = "O"  # the BIO tag of words outside any slot


class Labelling:
    """What classify and tag share: a labelled corpus, a classifier or tagger, its report.

    ``joint_decoding``: a model that gives classes and BIO tags decodes them together, keeping
    to the slot types seen with each class in training (``models/tag_decoding.py:joint_decode``);
    the checkpoint carries those slot types, so prediction does the same.
    ``class_loss_weight``: a joint model's training loss is this times the class cross-entropy
    plus the tags' loss (validation and test figures do not depend on it).
    ``augment_copies``: add that many slot-substituted copies of each training utterance with
    slots (``data/augment.py``; values drawn within ``substitution_groups`` of slot types), which
    needs the slot tags; with a slot lexicon, drawn within its cross-fitting folds.
    """

    name: ClassVar[str]
    outputs_tags: ClassVar[bool]  # whether the predictor prints tags (tag) or the class only

    def __init__(self, joint_decoding: bool, class_loss_weight: float, augment_copies: int,
                 substitution_groups: Sequence[Sequence[str]]) -> None:
        if not class_loss_weight > 0:
            raise ConfigError(f"topology.class_loss_weight={class_loss_weight}: expected a number > 0")
        self.joint_decoding, self.class_loss_weight = joint_decoding, class_loss_weight
        self.augment_copies, self.substitution_groups = augment_copies, substitution_groups

    def wants(self, model_cfg: DictConfig) -> tuple[bool, bool]:
        """(whether the model learns the classes, whether it learns the tags)."""
        raise NotImplementedError

    def setup(self, cfg: DictConfig, distributed: Distributed) -> TrainingSetup:
        want_labels, want_tags = self.wants(cfg.model)
        if self.augment_copies and not want_tags:
            raise ConfigError(f"topology.augment_copies={self.augment_copies} needs the slot tags: "
                              "topology=tag, or topology.auxiliary_tags=true with a joint tagger; "
                              "without them set topology.augment_copies=0")
        needs = [cfg.data.text_file] + ([cfg.data.label_file] if want_labels else []) \
            + ([cfg.data.tags_file] if want_tags else [])
        with distributed.main_first():
            corpus, tokenizer = prepare_labelled(cfg, self.name, needs)
        train = corpus.read(corpus.train, labels=want_labels, tags=want_tags)
        valid = corpus.read(corpus.valid, labels=want_labels, tags=want_tags)
        multi_label = multi_label_model(cfg.model)
        label_vocab = label_vocabulary(train.labels, train.files.get("labels"), multi_label)
        tag_vocab = LabelVocab.build([t for seq in train.tags for t in seq] + [OUTSIDE]) \
            if train.tags is not None else None
        utterances = training_utterances(cfg, train, self.augment_copies, self.substitution_groups)
        fitted, tables = utterances.split, utterances.tables
        pieces = tables.encode(tokenizer, fitted.words, MAX_PIECES_PER_WORD,
                               utterances.lexicon_features)
        train_labels = encode_labels(label_vocab, fitted.labels, train.files.get("labels"),
                                     multi_label)
        train_tags = None if fitted.tags is None or tag_vocab is None else \
            [tag_vocab.encode(t, str(train.files["tags"])) for t in fitted.tags]
        log.info("train: %d utterances from %s (%d of them slot-substituted copies); valid: %d; "
                 "%d classes, %s tags, vocab %d", len(pieces), corpus.root,
                 len(fitted) - utterances.real, len(valid), len(label_vocab),
                 len(tag_vocab) if tag_vocab else "no", tokenizer.vocab_size)
        batches = LabelledBatches(pieces, train_tags, train_labels.ids, cfg.trainer.batch_tokens,
                                  cfg.seed, cfg.trainer.max_sentences, distributed.rank,
                                  distributed.world_size, label_sets=train_labels.sets,
                                  num_labels=len(label_vocab))
        # Validation batches carry the gold labels too, for the validation loss.
        valid_labels = encode_labels(label_vocab, valid.labels, valid.files.get("labels"),
                                     multi_label, known_only=True)
        valid_batches = LabelledBatches(
            tables.encode(tokenizer, valid.words, MAX_PIECES_PER_WORD),
            None if valid.tags is None or tag_vocab is None else
            [tag_vocab.encode_known(t) for t in valid.tags],
            valid_labels.ids, 10**9, seed=0, label_sets=valid_labels.sets,
            num_labels=len(label_vocab))
        model = build_labelling_model(cfg.model, tokenizer.vocab_size, len(label_vocab),
                                      len(tag_vocab) if tag_vocab else 0, tables)
        if not cfg.get("resume"):  # a resumed run's embeddings come from its checkpoint
            load_pretrained_embeddings(model, {"encoder": tokenizer})
        joint = tags_model(cfg.model) and bool(cfg.model.get("joint", False))
        slots = class_slots(train.labels, train.tags) if self.joint_decoding and joint and \
            train.labels is not None and train.tags is not None else None
        objective = LabellingObjective(valid_batches, label_vocab, tag_vocab, tokenizer, valid,
                                       slots, tables, self.class_loss_weight, multi_label)
        facts = {"train_utterances": utterances.real,
                 "substituted_utterances": len(fitted) - utterances.real,
                 "vocab_size": tokenizer.vocab_size,
                 "data_files": file_lines(train, valid)}
        return TrainingSetup(model, objective, batches, facts, corpus)

    def load_predictor(self, payload: dict[str, Any], paths: Sequence[str | Path],
                       options: PredictOptions) -> Labeller:
        no_ensemble(paths, self.name)
        return Labeller.from_checkpoint(payload, self.outputs_tags, options.device)

    def test_report(self, cfg: DictConfig, predictor: Labeller, data: LabelledCorpus,
                    run_dir: Path, facts: dict[str, Any]) -> dict[str, Any]:
        want_labels, want_tags = self.wants(cfg.model)
        test = data.read(data.test, labels=want_labels, tags=want_tags)
        report = labelling_report(predictor, test, run_dir, self.name,
                                  errors=max(cfg.report.samples, 10), hypothesis_stem="test.hyp")
        report.update(facts)
        report["data_files"].update(file_lines(test))
        write_labelling_report(report, run_dir, cfg.report.html)
        headline = {k: report[k] for k in ("accuracy", "micro_f1", "macro_f1", "slot_f1")
                    if k in report}
        log.info("Test %s on %s; report in %s", headline, report["test_set"], run_dir / "report.md")
        return report

    def evaluate(self, request: EvaluationRequest, predictor: Optional[Labeller]) -> dict[str, Any]:
        references = read_lines(request.ref)
        if predictor is None:
            report = self.score_outputs(request, references)
        else:
            if request.src is None:
                raise ConfigError("--checkpoint needs --src")
            words = [line.split() for line in read_aligned(request.src, references, "--src")]
            split = self.gold_split(words, references, request)
            report = labelling_report(predictor, split, request.report_dir, self.name)
            report.update(checkpoint=request.checkpoints[0],
                          num_params=count_parameters(predictor.model),
                          data_files={p: line_count(p) for p in (request.src, request.ref,
                                                                 request.labels) if p})
        write_labelling_report(report, request.report_dir, request.html)
        return report

    def gold_split(self, words: list[list[str]], references: list[str],
                   request: EvaluationRequest) -> LabelledSplit:
        """The utterances with the gold labels the evaluate tool was given."""
        raise NotImplementedError

    def score_outputs(self, request: EvaluationRequest, references: list[str]) -> dict[str, Any]:
        """Score existing output lines (``request.hyp``) against ``references``."""
        raise NotImplementedError

    def summary(self, report: dict[str, Any]) -> list[str]:
        return summary_lines(report)


class Classify(Labelling):
    """N vs 1: an utterance in, one class out.

    ``auxiliary_tags``: train a joint tagger (``model=tagger``) on the slot tags too, as extra
    supervision for the class, which is all it outputs (multi-task learning).
    """

    name: ClassVar[str] = "classify"
    outputs_tags: ClassVar[bool] = False

    def __init__(self, auxiliary_tags: bool, joint_decoding: bool, class_loss_weight: float,
                 augment_copies: int, substitution_groups: Sequence[Sequence[str]]) -> None:
        super().__init__(joint_decoding, class_loss_weight, augment_copies, substitution_groups)
        self.auxiliary_tags = auxiliary_tags

    def wants(self, model_cfg: DictConfig) -> tuple[bool, bool]:
        if self.auxiliary_tags and not (tags_model(model_cfg) and model_cfg.get("joint", False)):
            raise ConfigError("topology.auxiliary_tags=true needs model=tagger with model.joint=true")
        return True, self.auxiliary_tags

    def gold_split(self, words: list[list[str]], references: list[str],
                   request: EvaluationRequest) -> LabelledSplit:
        return LabelledSplit(words, [c.strip() for c in references], None,
                             {"text": Path(str(request.src))})

    def score_outputs(self, request: EvaluationRequest, references: list[str]) -> dict[str, Any]:
        hypotheses = read_aligned(str(request.hyp), references, "--hyp")
        gold, predicted = [r.strip() for r in references], [h.strip() for h in hypotheses]
        report: dict[str, Any] = {"topology": self.name, "test_set": request.ref,
                                  "num_examples": len(references), "hypothesis_file": request.hyp}
        report.update(classification_scores(gold, predicted, sorted(set(gold) | set(predicted))))
        add_confusion_png(report, request.report_dir)
        return report


class Tag(Labelling):
    """N vs N: an utterance in, one tag per word out (a joint model prints the class first)."""

    name: ClassVar[str] = "tag"
    outputs_tags: ClassVar[bool] = True

    def wants(self, model_cfg: DictConfig) -> tuple[bool, bool]:
        joint = tags_model(model_cfg) and bool(model_cfg.get("joint", False))
        return joint, True

    def gold_split(self, words: list[list[str]], references: list[str],
                   request: EvaluationRequest) -> LabelledSplit:
        tags = [line.split() for line in references]
        check_one_tag_per_word(words, tags, request.ref, str(request.src))
        labels = None if request.labels is None else \
            [c.strip() for c in read_aligned(request.labels, references, "--labels")]
        return LabelledSplit(words, labels, tags, {"text": Path(str(request.src))})

    def score_outputs(self, request: EvaluationRequest, references: list[str]) -> dict[str, Any]:
        hypotheses = read_aligned(str(request.hyp), references, "--hyp")
        gold, predicted = [r.split() for r in references], [h.split() for h in hypotheses]
        check_one_tag_per_word(gold, predicted, str(request.hyp), request.ref)
        report: dict[str, Any] = {"topology": self.name, "test_set": request.ref,
                                  "num_examples": len(references), "hypothesis_file": request.hyp}
        report.update(slot_scores(gold, predicted))
        return report

