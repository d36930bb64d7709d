"""N vs 1 (``topology=classify``: one class per utterance, e.g. SNIPS intents) and N vs N
(``topology=tag``: one BIO tag per word, e.g. SNIPS slots; ``model.joint=true`` also predicts
the class), on a ``LabelledCorpus``."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Literal, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from seq2seq.config import build
from seq2seq.data.augment import cross_fitted_substitutions, substitute_slots
from seq2seq.data.corpus import write_lines
from seq2seq.data.labelled import (IGNORE, LabelledBatch, LabelledBatches, LabelledCorpus,
                                   LabelledSplit, LabelVocab, WordVocab)
from seq2seq.data.lexicon import SlotLexicon, cross_fitted_features
from seq2seq.data.word_tables import WordTables
from seq2seq.errors import CheckpointError, ConfigError
from seq2seq.evaluation.labels import classification_scores, labelling_sections, slot_scores
from seq2seq.evaluation.plots import plot_confusion
from seq2seq.evaluation.report import library_versions, line_count, write_report
from seq2seq.models import count_parameters
from seq2seq.models.crf import CRF
from seq2seq.tokenization import SentencePieceTokenizer, TokenizerPair, train_sentencepiece
from seq2seq.training.checkpoint import checkpoint_task, load_checkpoint
from seq2seq.training.distributed import Distributed

log = logging.getLogger(__name__)

Task = Literal["classify", "tag"]
OUTSIDE = "O"  # the BIO tag of words outside any slot


def corpus_from_config(data: DictConfig) -> LabelledCorpus:
    keys = ("train", "valid", "test", "text_file", "tags_file", "label_file")
    return LabelledCorpus(Path(data.root).expanduser(), **{k: data[k] for k in keys if k in data})


def prepare_labelled(cfg: DictConfig, needs: Sequence[str]) -> tuple[LabelledCorpus,
                                                                     SentencePieceTokenizer]:
    """Check the corpus files are there and train (or reuse) the tokenizer on the training text."""
    from seq2seq.pipeline import tokenizer_settings

    settings = tokenizer_settings(cfg.tokenizer)
    if settings.sampling_alpha > 0:  # pieces are tied to word tags here; sampling is not wired in
        raise ConfigError(f"tokenizer.sampling_alpha={settings.sampling_alpha}: subword sampling "
                          f"is for topology=translate; set it to 0 for topology={cfg.topology.task}")
    if settings.recase:
        raise ConfigError(f"tokenizer.recase=true restores the case of translations; it is for "
                          f"topology=translate, not topology={cfg.topology.task}")
    corpus = corpus_from_config(cfg.data)
    corpus.check_exist(needs)
    tokenizer = train_sentencepiece([corpus.path(corpus.train, corpus.text_file)], settings,
                                    cfg.tokenizer.cache_dir)
    return corpus, tokenizer


def model_outputs(model: nn.Module, batch: LabelledBatch) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """(class logits [B, L] or None, tag logits [B, W, T] or None), whichever the model gives."""
    out = model(batch.src, batch.src_len, batch.word_starts, batch.word_ends, batch.word_bytes,
                batch.word_lexicon, batch.word_ids)
    if isinstance(out, Tensor):
        return out, None
    return out.label_logits, out.tag_logits


def bio_transitions(names: Sequence[str]) -> tuple[Tensor, Tensor]:
    """Allowed BIO moves as additive scores (0 or -inf): ``I-x`` only after ``B-x`` or ``I-x``,
    and never first. Returns (start [T], transitions [T_prev, T_next])."""
    def inside_of(name: str) -> Optional[str]:
        return name[2:] if name.startswith("I-") else None

    size = len(names)
    start = torch.tensor([-math.inf if inside_of(n) else 0.0 for n in names])
    moves = torch.zeros(size, size)
    for j, name in enumerate(names):
        slot = inside_of(name)
        if slot is not None:
            for i, prev in enumerate(names):
                if prev[2:] != slot or prev[:2] not in ("B-", "I-"):
                    moves[i, j] = -math.inf
    return start, moves


def best_paths(log_probs: Tensor, mask: Tensor, start: Tensor, moves: Tensor,
               end: Optional[Tensor] = None) -> tuple[list[list[int]], Tensor]:
    """The best tag sequence of each row and its score [B]: per-word scores log_probs [B, W, T]
    (mask [B, W]) plus the scores of starting on a tag [T], of each move [T_prev, T_next] and of
    ending on a tag [T] (hard constraints are -inf there; a CRF adds its learned scores)."""
    score = start + log_probs[:, 0]                      # [B, T]
    back = []
    for t in range(1, log_probs.size(1)):
        candidates = score.unsqueeze(2) + moves          # [B, T_prev, T_next]
        best, previous = candidates.max(dim=1)
        live = mask[:, t].unsqueeze(1)
        score = torch.where(live, best + log_probs[:, t], score)
        back.append(torch.where(live, previous, torch.arange(score.size(1)).expand_as(previous)))
    if end is not None:
        score = score + end
    paths = []
    for row in range(log_probs.size(0)):
        tag = int(score[row].argmax())
        path = [tag]
        for step in reversed(back):
            tag = int(step[row, tag])
            path.append(tag)
        paths.append(path[::-1][: int(mask[row].sum())])
    return paths, score.max(dim=-1).values


def viterbi(log_probs: Tensor, mask: Tensor, start: Tensor, moves: Tensor,
            end: Optional[Tensor] = None) -> list[list[int]]:
    """The best tag sequence of each row (see ``best_paths``)."""
    return best_paths(log_probs, mask, start, moves, end)[0]


ClassSlots = dict[str, list[str]]  # class -> the slot types seen with it in training


def class_slots(labels: Sequence[str], tags: Sequence[Sequence[str]]) -> ClassSlots:
    """The slot types (``x`` of ``B-x``/``I-x``) that occur with each class in a training split."""
    seen: dict[str, set[str]] = {label: set() for label in labels}
    for label, row in zip(labels, tags):
        seen[label].update(t[2:] for t in row if t[:2] in ("B-", "I-"))
    return {label: sorted(slots) for label, slots in seen.items()}


def joint_decoding_scores(slots: Optional[ClassSlots], labels: LabelVocab,
                          tags: Optional[LabelVocab]) -> Optional[Tensor]:
    """``class_tag_scores`` for a model's classes and tags; None (independent decoding) without
    a class/slot table or without tags."""
    return class_tag_scores(slots, labels.names, tags.names) if slots and tags else None


def class_tag_scores(slots: ClassSlots, class_names: Sequence[str], tag_names: Sequence[str]
                     ) -> Tensor:
    """[C, T] additive scores: 0 where a tag may go with a class (O, and the B-/I- tags of the
    slot types seen with it), -inf elsewhere."""
    allowed = torch.zeros(len(class_names), len(tag_names))
    for c, name in enumerate(class_names):
        kept = set(slots.get(name, ()))
        for t, tag in enumerate(tag_names):
            if tag[:2] in ("B-", "I-") and tag[2:] not in kept:
                allowed[c, t] = -math.inf
    return allowed


def joint_decode(label_logits: Tensor, tag_scores: Tensor, mask: Tensor, start: Tensor,
                 moves: Tensor, end: Optional[Tensor], allowed: Tensor
                 ) -> tuple[list[int], list[list[int]]]:
    """The class and tag sequence that maximise log p(class) + the tag sequence's score, among
    the tag sequences whose slots were seen with that class in training (``allowed`` [C, T]).

    A class and tags that contradict each other (a ``movie_name`` slot in a ``SearchCreativeWork``
    query) cannot both be chosen; each output can correct the other. One Viterbi pass per class.
    """
    batch, classes = label_logits.shape
    log_p = torch.log_softmax(label_logits, dim=-1)
    scores = (tag_scores.unsqueeze(1) + allowed[None, :, None, :]).flatten(0, 1)  # [B*C, W, T]
    paths, path_scores = best_paths(scores, mask.repeat_interleave(classes, dim=0), start, moves, end)
    chosen = (log_p + path_scores.view(batch, classes)).argmax(dim=-1).tolist()
    return chosen, [paths[row * classes + c] for row, c in enumerate(chosen)]


def summed_loss(label_logits: Optional[Tensor], tag_logits: Optional[Tensor],
                batch: LabelledBatch, smoothing: float, crf: Optional[CRF] = None,
                class_weight: float = 1.0) -> Tensor:
    """Cross-entropy summed over the batch's gold classes and gold word tags (none: 0); with a
    ``crf``, the tags' loss is the negative log-likelihood of each gold tag sequence. A joint
    model's class term is multiplied by ``class_weight``."""
    total = torch.zeros(())
    if label_logits is not None and bool((batch.labels != IGNORE).any()):
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


class Predictions(NamedTuple):
    labels: Optional[list[int]]        # class ids, when the model predicts classes
    tags: Optional[list[list[int]]]    # tag ids per word, when it tags
    loss: float                        # cross-entropy summed over the gold units the batches hold
    units: int                         # those gold units


def predict(model: nn.Module, batches: LabelledBatches, tag_names: Optional[Sequence[str]] = None,
            allowed: Optional[Tensor] = None) -> Predictions:
    """Predicted class ids and per-word tag ids of every utterance, in corpus order, and the loss
    on whatever gold labels the batches carry, from one pass. With ``tag_names`` in BIO form, tags
    are decoded under BIO constraints (Viterbi), so that no slot starts with an ``I-`` tag;
    otherwise each word takes its most likely tag. With ``allowed`` ([C, T], ``class_tag_scores``)
    and a model that gives both, the class and the tags are decoded jointly (``joint_decode``)."""
    model.eval()
    constraints = bio_transitions(tag_names) if tag_names else None
    crf: Optional[CRF] = getattr(model, "crf", None)
    if crf is not None:
        constraints = crf.decoding_scores(*(constraints or ()))
    labels: list[int] = []
    tags: list[list[int]] = []
    loss, units = 0.0, 0
    with torch.inference_mode():
        for batch in batches.in_order():
            label_logits, tag_logits = model_outputs(model, batch)
            loss += float(summed_loss(label_logits, tag_logits, batch, 0.0, crf))
            units += batch.num_tgt_tokens
            if tag_logits is not None and constraints is not None:
                # A CRF's emissions are scores already; plain tag logits become log-probabilities.
                scores = tag_logits if crf is not None else torch.log_softmax(tag_logits, -1)
                if label_logits is not None and allowed is not None:
                    start, moves, *end = constraints
                    batch_labels, batch_tags = joint_decode(
                        label_logits, scores, batch.word_mask, start, moves,
                        end[0] if end else None, allowed)
                    labels += batch_labels
                    tags += batch_tags
                    continue
                tags += viterbi(scores, batch.word_mask, *constraints)
            elif tag_logits is not None:
                best = tag_logits.argmax(-1)
                tags += [row[:n].tolist() for row, n in zip(best, batch.word_mask.sum(1))]
            if label_logits is not None:
                labels += label_logits.argmax(-1).tolist()
    return Predictions(labels or None, tags or None, loss, units)


class LabellingObjective:
    """Cross-entropy on the classes and/or the word tags; validated by accuracy and slot F1."""

    def __init__(self, valid: LabelledBatches, labels: LabelVocab, tags: Optional[LabelVocab],
                 tokenizer: SentencePieceTokenizer, valid_split: LabelledSplit,
                 slots: Optional[ClassSlots] = None, tables: WordTables = WordTables(),
                 class_loss_weight: float = 1.0) -> None:
        self.valid, self.labels, self.tags = valid, labels, tags
        self.tokenizer, self.valid_split, self.slots = tokenizer, valid_split, slots
        self.tables, self.class_loss_weight = tables, class_loss_weight
        self.allowed = joint_decoding_scores(slots, labels, tags)
        self.metrics = ("loss", "accuracy", "macro_f1") + (("slot_f1",) if tags else ())

    def loss(self, model: nn.Module, batch: LabelledBatch, teacher_forcing: float,
             smoothing: float) -> Tensor:
        return summed_loss(*model_outputs(model, batch), batch, smoothing,
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


def score_predictions(predictions: Predictions, split: LabelledSplit, labels: LabelVocab,
                      tags: Optional[LabelVocab], with_details: bool = True) -> dict[str, Any]:
    """Accuracy/macro-F1 (when the model predicts classes) and slot F1 (when it tags)."""
    label_ids, tag_ids = predictions.labels, predictions.tags
    scores: dict[str, Any] = {}
    if label_ids is not None and split.labels is not None:
        classes = labels.names + sorted(set(split.labels) - set(labels.names))
        scores.update(classification_scores(split.labels, labels.decode(label_ids), classes))
    if tag_ids is not None and split.tags is not None:
        scores.update(slot_scores(split.tags, [tags.decode(t) for t in tag_ids]))
    if not with_details:
        scores = {k: v for k, v in scores.items() if isinstance(v, float)}
    return scores


MAX_PIECES_PER_WORD = 8  # a longer "word" (a URL, a typo run) keeps its first pieces


LEXICON_FOLDS = 5  # training utterances get lexicon features from the other 4/5 of the split


def slot_lexicon(cfg: DictConfig, train: LabelledSplit, limit: Optional[int] = None
                 ) -> tuple[Optional[SlotLexicon], Optional[list]]:
    """The slot lexicon of the first ``limit`` training utterances (all by default) and their
    cross-fitted features, when the model has lexicon features (``model.lexicon_features`` > 0)."""
    if not (tags_model(cfg.model) and cfg.model.get("lexicon_features", 0) and train.tags):
        return None, None
    words, tags = train.words[:limit], train.tags[:limit]
    lexicon = SlotLexicon.build(words, tags)
    # The folds' lexicons use the full lexicon's slot types, so feature ids mean the same.
    features = cross_fitted_features(words, tags, lexicon.types, LEXICON_FOLDS, cfg.seed)
    log.info("slot lexicon: %d entries of %d slot types", len(lexicon.entries), len(lexicon.types))
    return lexicon, features


def word_vocabulary(cfg: DictConfig, train: LabelledSplit, limit: Optional[int] = None
                    ) -> Optional[WordVocab]:
    """The whole-word vocabulary of the first ``limit`` training utterances, when the model has
    word embeddings (``model.word_embeddings`` > 0)."""
    if not (tags_model(cfg.model) and cfg.model.get("word_embeddings", 0)):
        return None
    vocab = WordVocab.build(train.words[:limit])
    log.info("word vocabulary: %d words seen at least twice", len(vocab.words))
    return vocab


def tags_model(model_cfg: DictConfig | dict) -> bool:
    """Whether the model config is a tagger (a classify run may train one, for its class head)."""
    return str(model_cfg["_target_"]).endswith("SequenceTagger")


def build_labelling_model(model_cfg: DictConfig | dict, vocab_size: int, num_labels: int,
                          num_tags: int, tables: WordTables = WordTables()) -> nn.Module:
    if isinstance(model_cfg, dict):
        model_cfg = OmegaConf.create(model_cfg)
    if tags_model(model_cfg):
        return build(model_cfg, src_vocab_size=vocab_size, num_tags=num_tags, num_labels=num_labels,
                     num_lexicon=tables.num_lexicon, num_words=tables.num_words)
    return build(model_cfg, src_vocab_size=vocab_size, num_labels=num_labels)


def run(cfg: DictConfig, run_dir: Path, overrides: list[str], distributed: Distributed,
        task: Task = "classify", auxiliary_tags: bool = False, joint_decoding: bool = True,
        class_loss_weight: float = 1.0, augment_copies: int = 0,
        substitution_groups: Sequence[Sequence[str]] = ()) -> dict[str, Any]:
    """Train a classifier or a tagger, score it on the test split and write the report.

    ``auxiliary_tags`` (classify): train a joint tagger (``model=tagger``) on the slot tags too,
    as extra supervision for the class, which is all it outputs (multi-task learning).
    ``joint_decoding``: a model that gives classes and BIO tags decodes them together, keeping
    to the slot types seen with each class in training (``joint_decode``); the checkpoint
    carries those slot types, so prediction does the same.
    ``class_loss_weight``: a joint model's training loss is this times the class cross-entropy
    plus the tags' loss (validation and test figures do not depend on it).
    ``augment_copies``: add that many slot-substituted copies of each training utterance with
    slots (``seq2seq/data/augment.py``; values drawn within ``substitution_groups`` of slot
    types), which needs the slot tags; with a slot lexicon, drawn within its cross-fitting folds
    (``cross_fitted_substitutions``).
    """
    from seq2seq.pipeline import choose_test_checkpoint, train_model
    from seq2seq.topologies.translation import training_facts

    if task not in ("classify", "tag"):
        raise ConfigError(f"topology.task={task!r}: expected classify or tag")
    if auxiliary_tags and not (tags_model(cfg.model) and cfg.model.get("joint", False)):
        raise ConfigError("topology.auxiliary_tags=true needs model=tagger with model.joint=true")
    if not class_loss_weight > 0:
        raise ConfigError(f"topology.class_loss_weight={class_loss_weight}: expected a number > 0")
    joint = tags_model(cfg.model) and bool(cfg.model.get("joint", False))
    want_labels, want_tags = task == "classify" or joint, task == "tag" or auxiliary_tags
    if augment_copies and not want_tags:
        raise ConfigError(f"topology.augment_copies={augment_copies} needs the slot tags: "
                          "topology=tag, or topology.auxiliary_tags=true with a joint tagger; "
                          "without them set topology.augment_copies=0")
    needs = [cfg.data.text_file] + ([cfg.data.label_file] if want_labels else []) \
        + ([cfg.data.tags_file] if want_tags else [])
    with distributed.main_first():
        corpus, tokenizer = prepare_labelled(cfg, needs)
    train = corpus.read(corpus.train, labels=want_labels, tags=want_tags)
    valid = corpus.read(corpus.valid, labels=want_labels, tags=want_tags)
    label_vocab = LabelVocab.build(train.labels or [])
    tag_vocab = LabelVocab.build([t for seq in train.tags for t in seq] + [OUTSIDE]) \
        if want_tags else None
    limit = cfg.data.get("limit_train")
    lexicon, train_features = slot_lexicon(cfg, train, limit)
    # The word tables come from the real utterances only, not from their substituted copies.
    tables = WordTables(lexicon, word_vocabulary(cfg, train, limit))
    fitted = LabelledSplit(train.words[:limit], train.labels[:limit] if want_labels else None,
                           train.tags[:limit] if want_tags else None, train.files)
    real = len(fitted)
    if augment_copies and lexicon is not None:
        # Copies drawn within the lexicon's folds, with their features from the other folds.
        words, tags, labels, features = cross_fitted_substitutions(
            fitted.words, fitted.tags, fitted.labels, augment_copies,
            [list(g) for g in substitution_groups], lexicon.types, LEXICON_FOLDS, cfg.seed)
        fitted = LabelledSplit(fitted.words + words,
                               None if fitted.labels is None else fitted.labels + labels,
                               fitted.tags + tags, fitted.files)
        train_features = train_features + features
    elif augment_copies:
        fitted = with_substitutions(fitted, augment_copies, substitution_groups, cfg.seed)
    pieces = tables.encode(tokenizer, fitted.words, MAX_PIECES_PER_WORD, train_features)
    train_labels = label_vocab.encode(fitted.labels, str(train.files.get("labels"))) \
        if want_labels else None
    train_tags = [tag_vocab.encode(t, str(train.files["tags"])) for t in fitted.tags] \
        if want_tags else None
    log.info("train: %d utterances from %s (%d of them slot-substituted copies); valid: %d; "
             "%d classes, %s tags, vocab %d", len(pieces), corpus.root,
             len(fitted) - real, len(valid), len(label_vocab),
             len(tag_vocab) if tag_vocab else "no", tokenizer.vocab_size)
    trainer_cfg = cfg.trainer
    batches = LabelledBatches(pieces, train_tags, train_labels, trainer_cfg.batch_tokens, cfg.seed,
                              trainer_cfg.max_sentences, distributed.rank, distributed.world_size)
    # Validation batches carry the gold labels too, for the validation loss.
    valid_batches = LabelledBatches(
        tables.encode(tokenizer, valid.words, MAX_PIECES_PER_WORD),
        [tag_vocab.encode_known(t) for t in valid.tags] if want_tags else None,
        label_vocab.encode_known(valid.labels) if want_labels else None, 10**9, seed=0)
    model = build_labelling_model(cfg.model, tokenizer.vocab_size, len(label_vocab),
                                  len(tag_vocab) if tag_vocab else 0, tables)
    slots = class_slots(train.labels, train.tags) \
        if joint_decoding and joint and want_labels and want_tags else None
    objective = LabellingObjective(valid_batches, label_vocab, tag_vocab, tokenizer, valid, slots,
                                   tables, class_loss_weight)
    state = train_model(cfg, run_dir, model, objective, batches, distributed)
    if not distributed.is_main:
        return {}

    best, averaging = choose_test_checkpoint(cfg, run_dir, model, objective, state)
    labeller = Labeller.from_checkpoint(best)
    test = corpus.read(corpus.test, labels=want_labels, tags=want_tags)
    report = labelling_report(labeller, test, run_dir, errors=max(cfg.report.samples, 10),
                              hypothesis_stem="test.hyp")
    report.update(
        checkpoint=str(best), num_params=count_parameters(labeller.model), **training_facts(state),
        best_valid=state.best_metrics, train_utterances=real,
        substituted_utterances=len(fitted) - real,
        learning_curve="learning_curve.png", overrides=list(overrides), seed=cfg.seed,
        vocab_size=tokenizer.vocab_size,
        data_files={str(p): line_count(p) for s in (train, valid, test) for p in s.files.values()},
        versions=library_versions(), **averaging)
    write_report(report, run_dir, html=cfg.report.html, content=labelling_sections(report))
    headline = {k: report[k] for k in ("accuracy", "macro_f1", "slot_f1") if k in report}
    log.info("Test %s on %s; report in %s", headline, report["test_set"], run_dir / "report.md")
    return report


def with_substitutions(split: LabelledSplit, copies: int, groups: Sequence[Sequence[str]],
                       seed: int) -> LabelledSplit:
    """``split`` followed by ``copies`` slot-substituted copies of each of its utterances with
    slots (``substitute_slots``)."""
    words, tags, labels = substitute_slots(split.words, split.tags, split.labels, copies,
                                           [list(g) for g in groups], seed)
    return LabelledSplit(split.words + words,
                         None if split.labels is None else split.labels + labels,
                         split.tags + tags, split.files)


def evaluation_batches(split: LabelledSplit, tokenizer: SentencePieceTokenizer,
                       tables: WordTables = WordTables()) -> LabelledBatches:
    """The split's utterances, for prediction in corpus order (labels are scored as strings)."""
    return LabelledBatches(tables.encode(tokenizer, split.words, MAX_PIECES_PER_WORD), None, None,
                           batch_tokens=10**9, seed=0)


def labelling_report(labeller: "Labeller", test: LabelledSplit, report_dir: Path,
                     errors: int = 10, hypothesis_stem: str = "hypotheses") -> dict[str, Any]:
    """Scores on ``test`` with their details, a confusion-matrix PNG, and the first errors.

    Every prediction goes to ``report_dir``, a line per utterance, in the corpus's own formats:
    ``{hypothesis_stem}.label`` (one class) and ``{hypothesis_stem}.tags`` (one tag per word),
    whichever the model predicts, so that ``seq2seq-evaluate --hyp`` can score them again."""
    batches = evaluation_batches(test, labeller.tokenizer, labeller.tables)
    report: dict[str, Any] = {"topology": labeller.task, "test_set": str(test.files["text"]),
                              "num_examples": len(test)}
    predictions = predict(labeller.model, batches, labeller.tag_names, labeller.allowed)
    report["joint_decoding"] = labeller.allowed is not None
    report.update(score_predictions(predictions, test, labeller.labels, labeller.tags))
    names = predicted_names(labeller, predictions)
    wrong = []
    for i, words in enumerate(test.words):
        row: dict[str, Any] = {"line": i + 1, "utterance": " ".join(words)}
        bad = False
        if "label" in names and test.labels is not None:
            predicted = names["label"][i]
            row.update(gold=test.labels[i], predicted=predicted)
            bad = predicted != test.labels[i]
        if "tags" in names and test.tags is not None and labeller.task == "tag":
            predicted_tags = names["tags"][i]
            row.update(gold_tags=" ".join(test.tags[i]), predicted_tags=" ".join(predicted_tags))
            bad = bad or predicted_tags != test.tags[i]
        if bad and len(wrong) < errors:
            wrong.append(row)
    report["errors"] = wrong
    report["hypothesis_files"] = write_predictions(names, report_dir, hypothesis_stem)
    if "confusion_matrix" in report:
        report_dir.mkdir(parents=True, exist_ok=True)
        plot_confusion(report["confusion_matrix"], report["classes"], report_dir / "confusion.png")
        report["confusion_png"] = "confusion.png"
    return report


def predicted_names(labeller: "Labeller", predictions: Predictions) -> dict[str, list]:
    """The predictions by name: {"label": a class per utterance, "tags": a tag list per
    utterance}, with the kinds the model predicts."""
    names: dict[str, list] = {}
    if predictions.labels is not None:
        names["label"] = [labeller.labels.names[i] for i in predictions.labels]
    if predictions.tags is not None:
        names["tags"] = [labeller.tags.decode(ids) for ids in predictions.tags]
    return names


def write_predictions(names: dict[str, list], folder: Path, stem: str) -> dict[str, str]:
    """Write ``predicted_names``'s classes and tag sequences, a line per utterance, to
    ``{stem}.label`` and ``{stem}.tags``; returns {"label" | "tags": file name}."""
    if names:
        folder.mkdir(parents=True, exist_ok=True)
    return {kind: write_lines(folder / f"{stem}.{kind}",
                              [row if kind == "label" else " ".join(row) for row in rows]).name
            for kind, rows in names.items()}


class Labeller:
    """Load a classify/tag checkpoint once; label lists of utterances.

    >>> Labeller.from_checkpoint("outputs/.../checkpoints/best.pt").predict(["play some jazz"])
    """

    def __init__(self, model: nn.Module, tokenizer: SentencePieceTokenizer, task: Task,
                 labels: LabelVocab, tags: Optional[LabelVocab],
                 slots: Optional[ClassSlots] = None, tables: WordTables = WordTables()) -> None:
        self.model, self.tokenizer, self.task = model.eval(), tokenizer, task
        self.labels, self.tags, self.tables = labels, tags, tables
        # Joint class + tag decoding, when the checkpoint was trained with it.
        self.allowed = joint_decoding_scores(slots, labels, tags)

    @classmethod
    def from_checkpoint(cls, path: str | Path, payload: Optional[dict] = None) -> "Labeller":
        """``payload``: the checkpoint's contents, if already loaded."""
        payload = payload or load_checkpoint(path)
        task = checkpoint_task(payload)
        if task not in ("classify", "tag"):
            raise CheckpointError(f"{path}: a {task} checkpoint, not a classify or tag one")
        config = OmegaConf.create(payload["config"])
        tokenizer = TokenizerPair.from_state_dict(payload["tokenizers"]).src
        labels = LabelVocab(payload["labels"])
        tags = LabelVocab(payload["tags"]) if payload.get("tags") else None
        tables = WordTables.from_state_dict(payload)
        model = build_labelling_model(config.model, tokenizer.vocab_size, len(labels),
                                      len(tags) if tags else 0, tables)
        model.load_state_dict(payload["model"])
        return cls(model, tokenizer, task, labels, tags, payload.get("class_slots"), tables)

    @property
    def tag_names(self) -> Optional[list[str]]:
        return self.tags.names if self.tags else None

    def predict(self, utterances: Sequence[str], line_offset: int = 0) -> list[str]:
        """One output line per utterance: its class (classify), or one tag per word (tag; with a
        joint model, the class, a tab, then the tags). A blank utterance gives an empty line."""
        words = [u.split() for u in utterances]
        filled = [i for i, w in enumerate(words) if w]
        split = LabelledSplit([words[i] for i in filled], None, None, {})
        out = [""] * len(utterances)
        if not filled:
            return out
        batches = evaluation_batches(split, self.tokenizer, self.tables)
        names = predicted_names(self, predict(self.model, batches, self.tag_names, self.allowed))
        for k, i in enumerate(filled):
            parts = []
            if "label" in names:
                parts.append(names["label"][k])
            if "tags" in names and self.task == "tag":
                parts.append(" ".join(names["tags"][k]))
            out[i] = "\t".join(parts)
        return out

