"""Subword tokenization with SentencePiece: train (cached), load, encode, decode.

The special ids below are the only definition of pad/unk/bos/eos in the package: SentencePiece
models are trained with exactly these ids, and every tensor uses them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, NamedTuple, Sequence, get_args

import sentencepiece as spm

from seq2seq.errors import ConfigError, check_choice

log = logging.getLogger(__name__)


class SpecialIds(NamedTuple):
    pad: int
    unk: int
    bos: int
    eos: int


SPECIALS = SpecialIds(pad=0, unk=1, bos=2, eos=3)
PAD, UNK, BOS, EOS = SPECIALS
IGNORE = -100  # torch's cross-entropy default ignore_index: labels/tags unseen in training, padding

# SentencePiece's built-in normalization rules; the "_cf" ones also fold case.
Normalization = Literal["nmt_nfkc", "nmt_nfkc_cf", "nfkc", "nfkc_cf", "identity"]
NORMALIZATIONS = get_args(Normalization)


@dataclass(frozen=True)
class TokenizerSettings:
    """How to train a SentencePiece model (the `tokenizer` config group; its values live in
    ``conf/tokenizer/unigram.yaml``)."""

    model_type: Literal["unigram", "bpe", "char", "word"]
    vocab_size: int
    joint: bool
    character_coverage: float
    # Let SentencePiece shrink the vocabulary when the corpus is too small for vocab_size.
    hard_vocab_limit: bool
    max_sentences: int  # 0: train on every line
    # Subword regularization of the training data (Kudo, 2018; BPE-dropout, Provilkov et al., 2020):
    # each epoch re-encodes the training pairs with a sampled segmentation. 0 = off. Unigram: the
    # smoothing exponent of the sampling distribution; BPE: the probability of dropping a merge.
    # They change how the model is used, not the SentencePiece model, so they stay out of its cache
    # key (as does `recase`).
    sampling_alpha: float
    sampling_nbest: int  # unigram: sample among the n best segmentations; -1: among all
    # SentencePiece's text normalization, stored in the model file so that every later encode
    # (training pairs, validation, translate) applies it. "nmt_nfkc_cf" adds case folding: the
    # model reads and writes lowercased text, the preprocessing of the published Multi30k RNN
    # results (and JoeyNMT's `lowercase`), scored against lowercased references.
    normalization: Normalization
    # With a case-folding normalization: put the case back into the translations with a casing
    # model fitted on the training targets (seq2seq/recase.py), and score them against the cased
    # references. It changes what is done with the output, not the SentencePiece model.
    recase: bool
    # Where trained SentencePiece models are kept, keyed by their corpus and settings.
    cache_dir: str
    # With max_sentences 0, input files of more lines than this train on a random sample of this
    # many (SentencePiece's input_sentence_size + shuffle_input_sentence), in bounded memory and
    # time; smaller corpora train on every line, as without it. 0: every line of any corpus.
    sample_sentences: int = 0

    def __post_init__(self) -> None:
        check_choice("tokenizer.model_type", self.model_type, ("unigram", "bpe", "char", "word"))
        check_choice("tokenizer.normalization", self.normalization, NORMALIZATIONS)
        if self.recase and not self.normalization.endswith("_cf"):
            raise ConfigError(f"tokenizer.recase=true restores the case of a case-folding model's "
                              f"output; it needs tokenizer.normalization nmt_nfkc_cf or nfkc_cf, "
                              f"not {self.normalization!r}")
        if not 0.0 <= self.sampling_alpha <= 1.0:
            raise ConfigError(f"tokenizer.sampling_alpha={self.sampling_alpha}: expected a number in "
                              "[0, 1] (0 turns subword sampling off)")
        if self.sampling_alpha > 0 and self.model_type not in ("unigram", "bpe"):
            raise ConfigError(f"tokenizer.sampling_alpha needs model_type unigram or bpe, not "
                              f"{self.model_type!r}")
        if self.sampling_nbest == 0 or self.sampling_nbest < -1:
            raise ConfigError(f"tokenizer.sampling_nbest={self.sampling_nbest}: expected -1 (all "
                              "segmentations) or a positive count")
        if self.vocab_size <= len(SPECIALS):
            raise ConfigError(
                f"tokenizer.vocab_size={self.vocab_size} is too small; it must be larger than the "
                f"{len(SPECIALS)} special tokens (pad, unk, bos, eos)"
            )


class SentencePieceTokenizer:
    """A trained SentencePiece model with the package's special ids."""

    def __init__(self, model_proto: bytes) -> None:
        self.model_proto = model_proto
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        ids = SpecialIds(self._sp.pad_id(), self._sp.unk_id(), self._sp.bos_id(), self._sp.eos_id())
        if ids != SPECIALS:
            raise ConfigError(f"SentencePiece model has special ids {ids}; expected {SPECIALS}")

    @classmethod
    def load(cls, path: str | Path) -> "SentencePieceTokenizer":
        """Load a ``.model`` file."""
        return cls(Path(path).read_bytes())

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    @property
    def folds_case(self) -> bool:
        """Whether the model's normalization lowercases what it reads (``normalization: *_cf``),
        so that it also writes lowercased text."""
        return "A" not in self._sp.normalize("A")  # the result carries the "▁" word marker

    def encode(self, lines: Sequence[str]) -> list[list[int]]:
        """Token ids of each line, without bos/eos."""
        return self._sp.encode(list(lines), out_type=int)

    def encode_sampled(self, lines: Sequence[str], alpha: float, nbest: int, seed: int
                       ) -> list[list[int]]:
        """Token ids of each line with a segmentation sampled by SentencePiece (subword
        regularization), the same for the same ``seed``."""
        # SentencePiece's sampler is one global generator; with one thread the draw order, and so
        # the result, is fixed by the seed (several threads interleave their draws).
        spm.set_random_generator_seed(seed)
        return self._sp.encode(list(lines), out_type=int, enable_sampling=True, alpha=alpha,
                               nbest_size=nbest, num_threads=1)

    def encode_pieces(self, lines: Sequence[str]) -> list[list[str]]:
        """Piece strings of each line (for reports and attention plots)."""
        return self._sp.encode(list(lines), out_type=str)

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Detokenized text of each id sequence; special ids are dropped."""
        return self._sp.decode([[i for i in seq if i > EOS] for seq in ids])

    def id_to_piece(self, ids: Sequence[int]) -> list[str]:
        return [self._sp.id_to_piece(int(i)) for i in ids]


def _fingerprint(files: Sequence[Path], settings: TokenizerSettings) -> tuple[str, int]:
    """The cache key of a model trained on ``files`` with ``settings``, and the input sentences it
    is trained on (``input_sentence_size``: 0 for all)."""
    trained_by = {k: v for k, v in asdict(settings).items()
                  if not k.startswith("sampling_")
                  and k not in ("recase", "cache_dir", "sample_sentences")}
    digest = hashlib.sha256(json.dumps(trained_by, sort_keys=True).encode())
    lines = 0
    for path in files:
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
                lines += block.count(b"\n")
    sample = training_sample(settings, lines)
    if sample != settings.max_sentences:  # only a corpus that is sampled gets another key
        digest.update(f"sample {sample}".encode())
    return digest.hexdigest()[:16], sample


def training_sample(settings: TokenizerSettings, lines: int) -> int:
    """SentencePiece's ``input_sentence_size`` for ``lines`` input lines: ``max_sentences`` when
    set, else ``sample_sentences`` when the corpus is larger, else 0 (every line)."""
    if settings.max_sentences > 0:
        return settings.max_sentences
    return settings.sample_sentences if 0 < settings.sample_sentences < lines else 0


def comma_free(paths: Sequence[Path], folder: Path) -> list[Path]:
    """``paths``, each with a comma in it replaced by a link in ``folder``: SentencePiece takes its
    input files as one comma-separated string."""
    out = []
    for i, path in enumerate(paths):
        if "," in str(path):
            link = folder / f"input{i}.txt"
            link.symlink_to(path.resolve())
            path = link
        out.append(path)
    return out


def train_sentencepiece(
    files: Sequence[str | Path], settings: TokenizerSettings, cache_dir: str | Path
) -> SentencePieceTokenizer:
    """Train a SentencePiece model on ``files``, or reuse the cached one trained on the same
    bytes with the same settings. The cache key hashes the file contents and the settings."""
    paths = [Path(f) for f in files]
    cache = Path(cache_dir).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    key, sample = _fingerprint(paths, settings)
    target = cache / f"spm-{key}.model"
    if target.exists():
        log.info("Reusing cached SentencePiece model %s", target)
        return SentencePieceTokenizer.load(target)
    log.info("Training SentencePiece (%s, %d pieces) on %s%s", settings.model_type,
             settings.vocab_size, ", ".join(str(p) for p in paths),
             f" (a random sample of {sample:,} lines)" if sample else "")
    with tempfile.TemporaryDirectory(dir=cache) as tmp, tempfile.TemporaryDirectory() as links:
        prefix = os.path.join(tmp, "spm")
        spm.SentencePieceTrainer.train(
            input=",".join(str(p) for p in comma_free(paths, Path(links))),
            model_prefix=prefix,
            model_type=settings.model_type,
            vocab_size=settings.vocab_size,
            character_coverage=settings.character_coverage,
            hard_vocab_limit=settings.hard_vocab_limit,
            normalization_rule_name=settings.normalization,
            input_sentence_size=sample,
            shuffle_input_sentence=sample > 0,
            pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS,
            num_threads=os.cpu_count() or 1,
            minloglevel=2,
        )
        # Rename into place only when complete, so a crash never leaves a half-written cache entry.
        os.replace(prefix + ".model", target)
    return SentencePieceTokenizer.load(target)


class TokenizerPair(NamedTuple):
    src: SentencePieceTokenizer
    tgt: SentencePieceTokenizer

    @property
    def joint(self) -> bool:
        """Whether both sides share one SentencePiece model (the same id is the same piece)."""
        return self.src is self.tgt or self.src.model_proto == self.tgt.model_proto

    def state_dict(self) -> dict:
        return {"src": self.src.model_proto, "tgt": self.tgt.model_proto}

    @classmethod
    def from_state_dict(cls, state: dict) -> "TokenizerPair":
        src = SentencePieceTokenizer(state["src"])
        tgt = src if state["tgt"] == state["src"] else SentencePieceTokenizer(state["tgt"])
        return cls(src, tgt)


def build_tokenizers(
    src_files: Sequence[str | Path], tgt_files: Sequence[str | Path],
    settings: TokenizerSettings, cache_dir: str | Path,
) -> TokenizerPair:
    """One joint model over both sides, or one model per side, as ``settings.joint`` says."""
    if settings.joint:
        joint = train_sentencepiece([*src_files, *tgt_files], settings, cache_dir)
        return TokenizerPair(joint, joint)
    return TokenizerPair(train_sentencepiece(src_files, settings, cache_dir),
                         train_sentencepiece(tgt_files, settings, cache_dir))
