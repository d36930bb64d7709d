"""The labelled corpus of the classify, tag and generate topologies: its tokenizer, the per-word
tables a tagger reads (slot lexicon, whole-word vocabulary), slot-substituted copies of the
training utterances, and the encoded training set."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from omegaconf import DictConfig

from seq2seq.config import build
from seq2seq.data.augment import cross_fitted_substitutions, substitute_slots
from seq2seq.data.labelled import (
    LabelledBatches,
    LabelledCorpus,
    LabelledSplit,
    LabelVocab,
    WordVocab,
    split_labels,
)
from seq2seq.data.lexicon import SlotLexicon, WordFeatures, cross_fitted_features
from seq2seq.data.word_tables import WordTables
from seq2seq.errors import ConfigError
from seq2seq.evaluation.report import line_count
from seq2seq.tokenization import SentencePieceTokenizer, TokenizerSettings, train_sentencepiece
from seq2seq.training.transfer import checkpoint_tokenizers

log = logging.getLogger(__name__)

MAX_PIECES_PER_WORD = 8  # a longer "word" (a URL, a typo run) keeps its first pieces
LEXICON_FOLDS = 5  # training utterances get lexicon features from the other 4/5 of the split


def prepare_labelled(cfg: DictConfig, topology: str, needs: Sequence[str]
                     ) -> tuple[LabelledCorpus, SentencePieceTokenizer]:
    """Check the corpus files ``needs`` are there and train (or reuse) the tokenizer on the
    training text (``topology``: the run's, for error messages)."""
    settings: TokenizerSettings = build(cfg.tokenizer)
    if settings.sampling_alpha > 0:  # pieces are tied to word tags here; sampling is not wired in
        raise ConfigError(f"tokenizer.sampling_alpha={settings.sampling_alpha}: subword sampling "
                          f"is for topology=translate; set it to 0 for topology={topology}")
    if settings.recase:
        raise ConfigError(f"tokenizer.recase=true restores the case of translations; it is for "
                          f"topology=translate, not topology={topology}")
    corpus: LabelledCorpus = build(cfg.data).corpus()
    corpus.check_exist(needs)
    if cfg.get("init_from"):  # its weights need its pieces (a resumed run's too)
        tokenizer = checkpoint_tokenizers(cfg.init_from).src
        log.info("tokenizer of %s (init_from)", cfg.init_from)
    else:
        tokenizer = train_sentencepiece([corpus.path(corpus.train, corpus.text_file)], settings,
                                        settings.cache_dir)
    return corpus, tokenizer


def tags_model(model_cfg: DictConfig | dict) -> bool:
    """Whether the model config is a tagger (a classify run may train one, for its class head)."""
    return str(model_cfg["_target_"]).endswith("SequenceTagger")


def multi_label_model(model_cfg: DictConfig | dict) -> bool:
    """Whether the model predicts label sets (a classifier with ``model.multi_label=true``)."""
    return bool(model_cfg.get("multi_label", False))


def label_vocabulary(labels: Optional[list[str]], where: Optional[Path], multi_label: bool
                     ) -> LabelVocab:
    """The classes of the training ``labels`` (read from ``where``), or for a multi-label model
    the labels of their ``#``-joined sets (``split_labels``)."""
    if multi_label and labels is not None:
        return LabelVocab.build([name for row in split_labels(labels, where or "") for name in row])
    return LabelVocab.build(labels or [])


@dataclass
class EncodedLabels:
    """The gold labels as batches carry them: class ids, or a multi-label model's label-id sets."""

    ids: Optional[list[int]]
    sets: Optional[list[list[int]]]


def encode_labels(vocab: LabelVocab, labels: Optional[list[str]], where: Optional[Path],
                  multi_label: bool, known_only: bool = False) -> EncodedLabels:
    """``labels`` (read from ``where``) as ids: a name unseen in training is a DataError, or with
    ``known_only`` (validation) ignored by the loss."""
    if labels is None:
        return EncodedLabels(None, None)
    if multi_label:
        sets = split_labels(labels, where or "")
        return EncodedLabels(None, vocab.encode_known_sets(sets) if known_only else
                             vocab.encode_sets(sets, str(where)))
    return EncodedLabels(vocab.encode_known(labels) if known_only else
                         vocab.encode(labels, str(where)), None)


def slot_lexicon(cfg: DictConfig, train: LabelledSplit, limit: Optional[int] = None
                 ) -> tuple[Optional[SlotLexicon], Optional[list[WordFeatures]]]:
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


def appended(split: LabelledSplit, words: list[list[str]], tags: list[list[str]],
             labels: Optional[list[str]]) -> LabelledSplit:
    """``split`` followed by new tagged utterances (with their classes where it has classes)."""
    return LabelledSplit(split.words + words,
                         None if split.labels is None or labels is None else split.labels + labels,
                         (split.tags or []) + tags, split.files)


def with_substitutions(split: LabelledSplit, copies: int, groups: Sequence[Sequence[str]],
                       seed: int) -> LabelledSplit:
    """``split`` followed by ``copies`` slot-substituted copies of each of its utterances with
    slots (``substitute_slots``)."""
    return appended(split, *substitute_slots(split.words, split.tags or [], split.labels, copies,
                                             [list(g) for g in groups], seed))


@dataclass
class TrainingUtterances:
    """The training split as the model reads it: the first ``data.limit_train`` utterances plus
    their slot-substituted copies, with the word tables built from the real ones."""

    split: LabelledSplit                         # real utterances first, then the copies
    real: int                                    # how many are real
    tables: WordTables
    lexicon_features: Optional[list[WordFeatures]]  # cross-fitted, one per utterance


def training_utterances(cfg: DictConfig, train: LabelledSplit, augment_copies: int,
                        substitution_groups: Sequence[Sequence[str]]) -> TrainingUtterances:
    """Limit the training split, build its word tables, and add ``augment_copies`` substituted
    copies of each utterance with slots (drawn within the lexicon's folds when there is one)."""
    limit = cfg.data.get("limit_train")
    lexicon, features = slot_lexicon(cfg, train, limit)
    # The word tables come from the real utterances only, not from their substituted copies.
    tables = WordTables(lexicon, word_vocabulary(cfg, train, limit))
    fitted = LabelledSplit(train.words[:limit],
                           None if train.labels is None else train.labels[:limit],
                           None if train.tags is None else train.tags[:limit], train.files)
    real = len(fitted)
    if augment_copies and lexicon is not None and features is not None:
        # Copies drawn within the lexicon's folds, with their features from the other folds.
        words, tags, labels, copy_features = cross_fitted_substitutions(
            fitted.words, fitted.tags or [], fitted.labels, augment_copies,
            [list(g) for g in substitution_groups], lexicon.types, LEXICON_FOLDS, cfg.seed)
        fitted = appended(fitted, words, tags, labels)
        features = features + copy_features
    elif augment_copies:
        fitted = with_substitutions(fitted, augment_copies, substitution_groups, cfg.seed)
    return TrainingUtterances(fitted, real, tables, features)


def file_lines(*splits: LabelledSplit) -> dict[str, int]:
    """The line count of each file the splits were read from (the report's ``data_files``)."""
    return {str(path): line_count(path) for split in splits for path in split.files.values()}


def evaluation_batches(split: LabelledSplit, tokenizer: SentencePieceTokenizer,
                       tables: WordTables = WordTables()) -> LabelledBatches:
    """The split's utterances, for prediction in corpus order (labels are scored as strings)."""
    return LabelledBatches(tables.encode(tokenizer, split.words, MAX_PIECES_PER_WORD), None, None,
                           batch_tokens=10**9, seed=0)
