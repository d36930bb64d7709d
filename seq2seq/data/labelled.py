"""Labelled utterances (SNIPS, ATIS layout): ``{root}/{split}/seq.in`` (words), ``seq.out`` (one BIO
tag per word) and ``label`` (one class per line; for a multi-label classifier, a set of labels
joined by ``#`` as multi-intent SNIPS/ATIS write them: ``atis_flight#atis_airfare``), and their
batches.

The tokenizer may split a word into several pieces; labels stay per word. A batch records where
each word's first and last pieces are (``word_starts``, ``word_ends``), the models predict a
word's tag from the states of its pieces, and tags are scored word by word whatever the tokenizer
does.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

import torch
from torch import Tensor

from seq2seq.data.batching import BucketedBatches, pad
from seq2seq.data.corpus import read_lines, require_files
from seq2seq.errors import DataError
from seq2seq.tokenization import EOS, IGNORE, UNK, SentencePieceTokenizer

LABEL_SEPARATOR = "#"  # between the labels of a multi-label line


def split_labels(lines: Sequence[str], where: str | Path = "") -> list[list[str]]:
    """Each line's ``#``-joined labels, in their order, without repeats; a DataError names the
    first line (``where``:number) with an empty label (``a##b``, a trailing ``#``)."""
    out = []
    for number, line in enumerate(lines, start=1):
        labels = line.strip().split(LABEL_SEPARATOR)
        if not all(labels):
            raise DataError(f"{where}:{number}: expected labels joined by {LABEL_SEPARATOR!r}, "
                            f"got {line!r} (an empty label)")
        out.append(list(dict.fromkeys(labels)))
    return out


def join_labels(labels: Sequence[str]) -> str:
    """A label set as a multi-label line writes it (``split_labels`` reads it back)."""
    return LABEL_SEPARATOR.join(labels)


@dataclass
class LabelledSplit:
    """One split: utterances as words, with their tags and class labels when the files exist."""

    words: list[list[str]]
    labels: Optional[list[str]]
    tags: Optional[list[list[str]]]
    files: dict[str, Path]

    def __len__(self) -> int:
        return len(self.words)


@dataclass(frozen=True)
class LabelledCorpus:
    """Where a labelled corpus lives (the ``data`` config of the classify/tag/generate topologies)."""

    root: Path
    train: str = "train"
    valid: str = "valid"
    test: str = "test"
    text_file: str = "seq.in"
    tags_file: str = "seq.out"
    label_file: str = "label"

    def path(self, split: str, name: str) -> Path:
        return self.root / split / name

    def check_exist(self, names: Sequence[str]) -> None:
        """Raise DataError listing every missing file, before any work is done."""
        require_files([self.path(s, n) for s in (self.train, self.valid, self.test) for n in names])

    def read(self, split: str, labels: bool = True, tags: bool = True) -> LabelledSplit:
        """Read a split; checks line counts, and one tag per word on every line."""
        text_path = self.path(split, self.text_file)
        words = [line.split() for line in read_lines(text_path)]
        files = {"text": text_path}
        label_list = tag_list = None
        if labels:
            files["labels"] = self.path(split, self.label_file)
            label_list = [line.strip() for line in read_lines(files["labels"])]
            _check_count(text_path, len(words), files["labels"], len(label_list))
            for number, label in enumerate(label_list, start=1):
                if not label or " " in label:
                    raise DataError(f"{files['labels']}:{number}: expected one label, got "
                                    f"{label!r}")
        if tags:
            files["tags"] = self.path(split, self.tags_file)
            tag_list = [line.split() for line in read_lines(files["tags"])]
            _check_count(text_path, len(words), files["tags"], len(tag_list))
            check_one_tag_per_word(words, tag_list, files["tags"], text_path)
        return LabelledSplit(words, label_list, tag_list, files)


@dataclass(frozen=True)
class LabelledData:
    """The ``data`` group of a labelled corpus (``conf/data/snips.yaml``)."""

    root: str
    train: str
    valid: str
    test: str
    text_file: str
    tags_file: str
    label_file: str
    limit_train: Optional[int]      # only the first N training utterances
    vocab_size: int                 # read by tokenizer.vocab_size

    def corpus(self) -> LabelledCorpus:
        return LabelledCorpus(Path(self.root).expanduser(), self.train, self.valid, self.test,
                              self.text_file, self.tags_file, self.label_file)


def check_one_tag_per_word(words: Sequence[Sequence[str]], tags: Sequence[Sequence[str]],
                           tags_file: str | Path, words_file: str | Path) -> None:
    """Raise DataError naming the first line whose tags do not match its words one to one."""
    for number, (w, t) in enumerate(zip(words, tags), start=1):
        if len(w) != len(t):
            raise DataError(f"{tags_file}:{number}: {len(t)} tags for the {len(w)} words of "
                            f"{words_file}:{number}; expected one tag per word")


def _check_count(first: Path, n_first: int, second: Path, n_second: int) -> None:
    if n_first != n_second:
        raise DataError(f"line counts differ: {first} has {n_first} lines, {second} has "
                        f"{n_second}; expected one line of each per utterance")


class LabelVocab:
    """Class or tag names <-> ids, in a fixed order (sorted), saved in checkpoints."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.index = {name: i for i, name in enumerate(self.names)}

    @classmethod
    def build(cls, values: Sequence[str]) -> "LabelVocab":
        return cls(sorted(set(values)))

    def __len__(self) -> int:
        return len(self.names)

    def encode(self, values: Sequence[str], where: str = "") -> list[int]:
        """Ids of ``values``; a name unseen in training is a DataError (naming ``where``)."""
        try:
            return [self.index[v] for v in values]
        except KeyError as err:
            raise DataError(f"{where}: label {err.args[0]!r} does not occur in the training "
                            f"data (known: {', '.join(self.names[:20])}...)") from None

    def encode_known(self, values: Sequence[str]) -> list[int]:
        """Ids of ``values``, IGNORE for names unseen in training (validation loss skips them)."""
        return [self.index.get(v, IGNORE) for v in values]

    def decode(self, ids: Sequence[int]) -> list[str]:
        return [self.names[i] for i in ids]

    def encode_sets(self, label_sets: Sequence[Sequence[str]], where: str = "") -> list[list[int]]:
        """The ids of each utterance's labels (``split_labels``); an unseen one is a DataError."""
        return [self.encode(labels, where) for labels in label_sets]

    def encode_known_sets(self, label_sets: Sequence[Sequence[str]]) -> list[list[int]]:
        """The ids of each utterance's labels seen in training (validation loss skips the rest)."""
        return [[i for i in self.encode_known(labels) if i != IGNORE] for labels in label_sets]


class WordVocab:
    """Whole words <-> ids for word embeddings beside the pieces: the training split's words
    seen at least ``min_count`` times (so a word seen once is trained as the unknown word, as an
    unseen word will be at test time), most frequent first; saved in checkpoints. Ids 0 and 1
    are padding and any other word, as for pieces (PAD, UNK)."""

    def __init__(self, words: Sequence[str]) -> None:
        self.words = list(words)
        self.index = {word: i for i, word in enumerate(self.words, start=UNK + 1)}

    @classmethod
    def build(cls, utterances: Sequence[Sequence[str]], min_count: int = 2) -> "WordVocab":
        counts = Counter(w for words in utterances for w in words)
        return cls(sorted((w for w, n in counts.items() if n >= min_count),
                          key=lambda w: (-counts[w], w)))

    def __len__(self) -> int:
        """Ids in use, padding and the unknown word included."""
        return len(self.words) + 2

    def encode(self, words: Sequence[str]) -> list[int]:
        return [self.index.get(w, UNK) for w in words]


MAX_WORD_BYTES = 24  # byte-level word features read a word's first 24 UTF-8 bytes


class WordPieces(NamedTuple):
    """An utterance's piece ids, the position of each word's first piece, each word's UTF-8
    bytes (for byte-level word features; bytes, not characters, so there is no character
    vocabulary to build and save), for a tagger with a slot lexicon each word's lexicon
    feature ids (``seq2seq/data/lexicon.py``), and for one with word embeddings each word's id
    in its ``WordVocab``."""

    ids: list[int]
    starts: list[int]
    word_bytes: list[bytes]
    lexicon: Optional[list[list[int]]] = None
    word_ids: Optional[list[int]] = None


def encode_words(tokenizer: SentencePieceTokenizer, utterances: Sequence[Sequence[str]],
                 max_pieces: Optional[int] = None,
                 lexicon: Optional[Sequence[list[list[int]]]] = None,
                 word_vocab: Optional[WordVocab] = None) -> list[WordPieces]:
    """Tokenize each word on its own (as it would be after a space), keeping word boundaries.
    With ``max_pieces``, a long word keeps its first pieces only, so no word is lost.
    ``lexicon``: each utterance's lexicon features, kept with its pieces; ``word_vocab``: the
    whole-word ids to keep with them too."""
    if lexicon is not None and (len(lexicon) != len(utterances) or any(
            len(f) != len(w) for f, w in zip(lexicon, utterances))):
        # A programming error, not bad input: features must follow their utterances word by word.
        raise ValueError("lexicon features do not line up with the utterances' words")
    vocabulary = sorted({w for words in utterances for w in words})
    pieces_of = dict(zip(vocabulary, tokenizer.encode(vocabulary)))
    out = []
    for n, words in enumerate(utterances):
        ids: list[int] = []
        starts: list[int] = []
        for word in words:
            starts.append(len(ids))
            ids.extend((pieces_of[word] or [UNK])[:max_pieces])
        out.append(WordPieces(ids, starts, [w.encode("utf-8")[:MAX_WORD_BYTES] for w in words],
                              None if lexicon is None else lexicon[n],
                              None if word_vocab is None else word_vocab.encode(words)))
    return out


class LabelledBatch(NamedTuple):
    src: Tensor          # [B, S] piece ids + EOS, right-padded
    src_len: Tensor      # [B]
    word_starts: Tensor  # [B, W] position of each word's first piece (0 on padding words)
    word_ends: Tensor    # [B, W] position of each word's last piece (0 on padding words)
    word_mask: Tensor    # [B, W] True on real words
    tags: Tensor         # [B, W] tag ids, IGNORE on padding words (all IGNORE without tags)
    labels: Tensor       # [B] class ids (IGNORE without labels)
    indices: Tensor      # [B] position of each utterance in its split
    word_bytes: Tensor   # [B, W, L] each word's UTF-8 bytes + 1 (0 is padding)
    word_lexicon: Optional[Tensor] = None  # [B, W, K] lexicon feature ids (0 pads), if any
    word_ids: Optional[Tensor] = None      # [B, W] WordVocab ids (PAD pads), if any
    label_sets: Optional[Tensor] = None    # [B, L] 1.0 on each gold label (multi-label), if any

    @property
    def num_tgt_tokens(self) -> int:
        """Predicted units: tagged words, or one class (or label set) per utterance."""
        tagged = int((self.tags != IGNORE).sum())
        if tagged:
            return tagged
        return self.label_sets.size(0) if self.label_sets is not None else \
            int((self.labels != IGNORE).sum())


def make_labelled_batch(pieces: Sequence[WordPieces], tags: Optional[Sequence[Sequence[int]]],
                        labels: Optional[Sequence[int]], indices: Sequence[int],
                        label_sets: Optional[Sequence[Sequence[int]]] = None,
                        num_labels: int = 0) -> LabelledBatch:
    """A batch; ``label_sets`` (each utterance's label ids, of ``num_labels``) for a multi-label
    classifier."""
    src, src_len = pad([list(p.ids) + [EOS] for p in pieces])
    starts, _ = pad([p.starts for p in pieces])
    ends, _ = pad([[s - 1 for s in p.starts[1:]] + [len(p.ids) - 1] for p in pieces])
    n_words = torch.tensor([len(p.starts) for p in pieces])
    word_mask = torch.arange(starts.size(1)).unsqueeze(0) < n_words.unsqueeze(1)
    tag_ids = torch.full(starts.shape, IGNORE, dtype=torch.long)
    if tags is not None:
        for row, seq in enumerate(tags):
            tag_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    label_ids = torch.as_tensor(labels if labels is not None else [IGNORE] * len(pieces))
    longest = max((len(b) for p in pieces for b in p.word_bytes), default=1)
    blank = [0] * longest
    word_bytes = torch.tensor([[[x + 1 for x in raw] + blank[len(raw):] for raw in p.word_bytes]
                               + [blank] * (starts.size(1) - len(p.word_bytes)) for p in pieces])
    multi_hot = None
    if label_sets is not None:
        multi_hot = torch.zeros(len(pieces), num_labels)
        for row, ids in enumerate(label_sets):
            multi_hot[row, list(ids)] = 1.0
    return LabelledBatch(src, src_len, starts, ends, word_mask, tag_ids, label_ids,
                         torch.as_tensor(list(indices)), word_bytes,
                         _lexicon_ids(pieces, starts.size(1)), _word_ids(pieces), multi_hot)


def _word_ids(pieces: Sequence[WordPieces]) -> Optional[Tensor]:
    """[B, W] the words' WordVocab ids, PAD-padded; None when the pieces carry none."""
    word_ids = [p.word_ids for p in pieces if p.word_ids is not None]
    return pad(word_ids)[0] if len(word_ids) == len(pieces) else None


def _lexicon_ids(pieces: Sequence[WordPieces], words: int) -> Optional[Tensor]:
    """[B, W, K] the words' lexicon feature ids, 0-padded; None when the pieces carry none."""
    lexicons = [p.lexicon for p in pieces if p.lexicon is not None]
    if len(lexicons) < len(pieces):
        return None
    most = max((len(ids) for lexicon in lexicons for ids in lexicon), default=0)
    out = torch.zeros(len(pieces), words, max(most, 1), dtype=torch.long)
    for row, lexicon in enumerate(lexicons):
        for word, ids in enumerate(lexicon):
            if ids:
                out[row, word, : len(ids)] = torch.as_tensor(ids)
    return out


class LabelledBatches(BucketedBatches):
    """Batches of labelled utterances, bucketed by length (see ``BucketedBatches``); a
    multi-label classifier's carry ``label_sets`` (label ids of ``num_labels``) for ``labels``."""

    def __init__(self, pieces: list[WordPieces], tags: Optional[list[list[int]]],
                 labels: Optional[list[int]], batch_tokens: int, seed: int,
                 max_sentences: Optional[int] = None, rank: int = 0, world_size: int = 1, *,
                 label_sets: Optional[list[list[int]]] = None, num_labels: int = 0) -> None:
        super().__init__([len(p.ids) + 1 for p in pieces], batch_tokens, seed, max_sentences, rank,
                         world_size)
        self.pieces, self.tags, self.labels = pieces, tags, labels
        self.label_sets, self.num_labels = label_sets, num_labels

    def batch(self, ids: Sequence[int]) -> LabelledBatch:
        return make_labelled_batch([self.pieces[i] for i in ids],
                                   None if self.tags is None else [self.tags[i] for i in ids],
                                   None if self.labels is None else [self.labels[i] for i in ids],
                                   ids,
                                   None if self.label_sets is None else
                                   [self.label_sets[i] for i in ids], self.num_labels)

