"""Pretrained word vectors for an embedding table, read from a word2vec or GloVe text file.

``model.encoder.pretrained_embeddings`` (or ``model.decoder.``) names a text file of one word and
its vector per line, with (word2vec: "COUNT DIM") or without (GloVe) a header line. A piece that
is a whole word (``▁word``, SentencePiece's word-start marker) takes the vector of ``word``, or
else of ``word.lower()``; every other row keeps its random initialisation. The topology loads the
file once, at the start of a fresh run (a resumed run reads its embeddings from the checkpoint).

``freeze_embeddings``: the matched rows keep their vectors in training. Their gradient is zeroed
by a hook on the table, so the unmatched rows (subword pieces, words the file lacks) still learn;
with Adam (no weight decay) a row whose gradient is always zero never moves. A decoder with
``tie_embeddings`` shares the table with its output layer, whose matched rows are then frozen too.
Which rows are frozen is a buffer (``frozen_embeddings``), saved with the checkpoint, so a resumed
run freezes the same rows without the file.

The file is a stranger's: it is read as text only, a malformed line is a ``DataError`` naming
file:line and what was expected, and only the numbers of the words the vocabulary needs are parsed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional, Protocol

import torch
from torch import Tensor, nn

from seq2seq.errors import ConfigError, DataError

log = logging.getLogger(__name__)

WORD_START = "\u2581"  # "▁": SentencePiece's mark of a piece that begins a word


class PieceVocabulary(Protocol):
    """What a tokenizer offers here: its pieces by id (``SentencePieceTokenizer``)."""

    @property
    def vocab_size(self) -> int: ...

    def id_to_piece(self, ids: Sequence[int]) -> list[str]: ...


def check_pretrained_options(prefix: str, pretrained_embeddings: Optional[str],
                             freeze_embeddings: bool) -> None:
    """A ConfigError for ``freeze_embeddings`` without a file: it would freeze nothing."""
    if freeze_embeddings and not pretrained_embeddings:
        raise ConfigError(f"{prefix}.freeze_embeddings=true freezes the rows of "
                          f"{prefix}.pretrained_embeddings, which is not set; set a word-vector "
                          "file or freeze_embeddings=false")


def freeze_matched_rows(module: nn.Module, embedding: nn.Embedding) -> None:
    """Give ``module`` a ``frozen_embeddings`` buffer [V] (False until vectors are loaded) and
    zero the gradient of the rows it marks, whichever layer the gradient comes from."""
    module.register_buffer("frozen_embeddings",
                           torch.zeros(embedding.num_embeddings, dtype=torch.bool))

    def zero_frozen(grad: Tensor) -> Tensor:
        frozen = module.get_buffer("frozen_embeddings")
        return grad.masked_fill(frozen.unsqueeze(1), 0.0)

    embedding.weight.register_hook(zero_frozen)


def piece_words(pieces: Sequence[str]) -> dict[int, str]:
    """The word of each whole-word piece, by id: ``▁word`` -> ``word`` (pieces that continue a
    word, bare ``▁`` and the special pieces have none)."""
    return {i: piece[1:] for i, piece in enumerate(pieces)
            if piece.startswith(WORD_START) and len(piece) > 1}


def _fields(raw: bytes, where: str) -> list[str]:
    try:
        return raw.decode("utf-8").split()
    except UnicodeDecodeError as err:
        raise DataError(f"{where}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def read_vectors(path: Path, dim: int, wanted: set[str], option: str) -> dict[str, Tensor]:
    """The vectors [dim] of the ``wanted`` words in a word2vec (header "COUNT DIM") or GloVe (no
    header) text file; the first occurrence of a word counts. Every line must hold a word and
    ``dim`` numbers (a DataError naming file:line otherwise); a file of another dimension is a
    ConfigError naming ``option``'s embedding_dim."""
    found: dict[str, Tensor] = {}
    count: Optional[int] = None  # the header's, when there is one
    vectors = 0
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            where = f"{path}:{number}"
            fields = _fields(raw, where)
            if not fields:
                continue  # a blank line (often the last)
            if number == 1 and len(fields) == 2 and all(f.isdigit() for f in fields):
                count, file_dim = int(fields[0]), int(fields[1])
                _check_dim(file_dim, dim, path, option)
                continue
            if vectors == 0 and count is None:
                _check_dim(len(fields) - 1, dim, path, option)  # GloVe: the first vector's size
            if len(fields) != dim + 1:
                raise DataError(f"{where}: expected a word and {dim} numbers separated by "
                                f"spaces; found {len(fields)} fields")
            vectors += 1
            word = fields[0]
            if word in wanted and word not in found:
                found[word] = _vector(fields[1:], where)
    if vectors == 0:
        raise DataError(f"{path}: no vectors; expected lines of a word and {dim} numbers")
    if count is not None and count != vectors:
        raise DataError(f"{path}:1: the header announces {count} vectors; the file holds "
                        f"{vectors} (a truncated or altered file?)")
    return found


def _check_dim(file_dim: int, dim: int, path: Path, option: str) -> None:
    if file_dim != dim:
        raise ConfigError(f"{option}.pretrained_embeddings={path} holds vectors of dimension "
                          f"{file_dim}; {option}.embedding_dim is {dim}: set it to {file_dim}")


def _vector(numbers: Sequence[str], where: str) -> Tensor:
    values = []
    for k, text in enumerate(numbers, start=1):
        try:
            value = float(text)
        except ValueError:
            raise DataError(f"{where}: number {k} of the vector is {text[:20]!r}; expected a "
                            "decimal number") from None
        if not math.isfinite(value):
            raise DataError(f"{where}: number {k} of the vector is {text[:20]!r}; expected a "
                            "finite number")
        values.append(value)
    return torch.tensor(values)


def load_into(embedding: nn.Embedding, path: str | Path, pieces: Sequence[str], option: str
              ) -> Tensor:
    """Copy the file's vectors into the rows of ``embedding`` whose piece is a whole word it has
    (the exact word, else its lowercase form). Returns the matched rows [V] (bool)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"{option}.pretrained_embeddings={path}: no such file")
    words = piece_words(pieces)
    wanted = set(words.values()) | {word.lower() for word in words.values()}
    vectors = read_vectors(file, embedding.embedding_dim, wanted, option)
    matched = torch.zeros(embedding.num_embeddings, dtype=torch.bool)
    with torch.no_grad():
        for row, word in words.items():
            vector = vectors.get(word, vectors.get(word.lower()))
            if vector is not None:
                embedding.weight[row] = vector.to(embedding.weight)
                matched[row] = True
    log.info("%s.pretrained_embeddings: %d of %d pieces (%.1f %%) take a vector of %s",
             option, int(matched.sum()), len(pieces), 100.0 * int(matched.sum()) / len(pieces),
             file)
    return matched


def load_pretrained_embeddings(model: nn.Module, vocabularies: Mapping[str, PieceVocabulary]
                               ) -> dict[str, float]:
    """Load the word vectors of each of ``model``'s parts named in ``vocabularies`` ("encoder",
    "decoder": an ``RNNEncoder``/``RNNDecoder`` attribute) that has ``pretrained_embeddings``
    set, for its tokenizer's pieces, and mark the matched rows frozen where it freezes them.
    Call once, on a fresh model. Returns the coverage (matched / vocabulary) per part."""
    coverage = {}
    for part, vocabulary in vocabularies.items():
        module = getattr(model, part, None)
        if not isinstance(module, nn.Module):
            raise ValueError(f"{type(model).__name__} has no {part} to load word vectors into")
        path = getattr(module, "pretrained_embeddings", None)
        if not path:
            continue
        embedding = module.get_submodule("embedding")
        if not isinstance(embedding, nn.Embedding):
            raise ValueError(f"{part}.embedding is not an embedding table")
        pieces = vocabulary.id_to_piece(range(vocabulary.vocab_size))
        matched = load_into(embedding, path, pieces, f"model.{part}")
        if getattr(module, "freeze_embeddings", False):
            frozen = module.get_buffer("frozen_embeddings")
            frozen.copy_(matched.to(frozen.device))
        coverage[part] = int(matched.sum()) / max(len(pieces), 1)
    return coverage
