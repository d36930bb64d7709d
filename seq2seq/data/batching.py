"""Turn token-id sequences into padded batches under a token budget, grouped by length."""

from __future__ import annotations

import array
import logging
import random
from dataclasses import dataclass
from typing import Any, Callable, Iterator, NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from seq2seq.tokenization import BOS, EOS, PAD

log = logging.getLogger(__name__)


class Batch(NamedTuple):
    src: Tensor      # [B, S] source ids + EOS, right-padded with PAD
    src_len: Tensor  # [B] true source lengths (EOS included)
    tgt_in: Tensor   # [B, T] BOS + target ids (decoder input under teacher forcing)
    tgt_out: Tensor  # [B, T] target ids + EOS (what the decoder must predict)
    indices: Tensor  # [B] position of each pair in the corpus

    @property
    def num_tgt_tokens(self) -> int:
        """Target tokens to predict: pieces + EOS, no padding."""
        return int((self.tgt_out != PAD).sum())


def pad(sequences: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """Right-pad id lists into [B, L] with PAD; also return the lengths [B]."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    out = torch.full((len(sequences), int(lengths.max()) if len(sequences) else 0), PAD,
                     dtype=torch.long)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return out, lengths


def make_batch(src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]] | None,
               indices: Sequence[int]) -> Batch:
    """Build a batch from raw id lists (no BOS/EOS yet); ``tgt`` may be None for translation."""
    src_ids, src_len = pad([list(s) + [EOS] for s in src])
    if tgt is None:
        empty = torch.zeros(len(src), 0, dtype=torch.long)
        return Batch(src_ids, src_len, empty, empty, torch.as_tensor(indices))
    tgt_in, _ = pad([[BOS] + list(t) for t in tgt])
    tgt_out, _ = pad([list(t) + [EOS] for t in tgt])
    return Batch(src_ids, src_len, tgt_in, tgt_out, torch.as_tensor(indices))


def length_batches(lengths: Sequence[int], batch_tokens: int, shuffle: bool, seed: int = 0,
                   max_sentences: int | None = None) -> list[list[int]]:
    """Group example indices into batches of similar length (``length_batch_arrays`` as lists)."""
    return [batch.tolist() for batch in length_batch_arrays(lengths, batch_tokens, shuffle, seed,
                                                             max_sentences)]


def length_batch_arrays(lengths: Sequence[int] | np.ndarray, batch_tokens: int, shuffle: bool,
                        seed: int = 0, max_sentences: int | None = None) -> list[np.ndarray]:
    """Group example indices into batches of similar length, each an integer array.

    Each batch's padded size (sentences x longest length) stays within ``batch_tokens``, so short
    sentences come in large batches and long ones in small batches, and little padding is computed.
    With ``shuffle``, ties in length are broken at random and the batch order is shuffled, both from
    ``seed`` (fairseq's and OpenNMT-py's bucketing).

    The draws are Python's ``random.Random(seed).shuffle`` of the indices and then of the batches,
    as in the list-based planner this replaces, so a seed plans the same batches as before; the
    sort and the cuts run in numpy (millions of pairs in seconds, a few bytes per pair).
    """
    # 4-byte lengths and indices below 2**31 pairs: the plan of 4 million pairs peaks about
    # 100 MB lower than with 8-byte ones (BENCHMARKS.md: "Real scale").
    wide = len(lengths) >= 2**31
    index_code, index_type = ("q", np.int64) if wide else ("i", np.int32)
    sizes = np.asarray(lengths, dtype=np.int32)
    rng = random.Random(seed)
    if shuffle:
        shuffled = array.array(index_code, range(len(sizes)))  # not a Python int per index
        rng.shuffle(shuffled)
        order = np.frombuffer(shuffled, dtype=index_type)
    else:
        order = np.arange(len(sizes), dtype=index_type)
    order = order[np.argsort(sizes[order], kind="stable")]  # stable: ties keep the shuffled order
    ordered = sizes[order]
    cap = max_sentences if max_sentences is not None else len(order)
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        # Sorted ascending, a batch grown to c+1 pairs costs (c+1) x the length of its newest pair;
        # it closes before the first pair that breaks the budget or at max_sentences pairs.
        window = min(len(order) - start, max(cap, 1),
                     batch_tokens // max(int(ordered[start]), 1) + 1)
        grown = np.arange(2, window + 1, dtype=np.int64)  # sizes with pair start+1 .. start+window-1
        over = np.flatnonzero(ordered[start + 1:start + window] * grown > batch_tokens)  # in int64
        size = int(over[0]) + 1 if len(over) else window
        batches.append(order[start:start + size])
        start += size
    if shuffle:
        rng.shuffle(batches)
    return batches


class BucketedBatches:
    """Epochs of length-bucketed batches, seeded per epoch and resumable at any batch.

    Subclasses say how to ``batch`` a list of example indices. With ``world_size`` > 1
    (data-parallel training), rank ``rank`` gets every ``world_size``-th batch of each epoch's
    plan, and all ranks get the same number of batches (the few left over are skipped that epoch;
    the next epoch's plan is shuffled differently).
    """

    def __init__(self, lengths: Sequence[int] | np.ndarray, batch_tokens: int, seed: int,
                 max_sentences: int | None = None, rank: int = 0, world_size: int = 1) -> None:
        self.lengths = lengths
        self.batch_tokens, self.seed, self.max_sentences = batch_tokens, seed, max_sentences
        self.rank, self.world_size = rank, world_size
        self._planned: tuple[tuple[int, int], list[np.ndarray]] | None = None

    def batch(self, ids: Sequence[int]):
        raise NotImplementedError

    def plan(self, epoch: int) -> list[np.ndarray]:
        """This rank's batches of ``epoch`` (seeded by seed + epoch) as arrays of example indices.

        The last epoch's plan is kept: the trainer asks for its length and then for its batches,
        and planning millions of pairs takes seconds."""
        key = (epoch, id(self.lengths))
        if self._planned is not None and self._planned[0] == key:
            return self._planned[1]
        plan = length_batch_arrays(self.lengths, self.batch_tokens, shuffle=True,
                                   seed=self.seed + epoch, max_sentences=self.max_sentences)
        per_rank = len(plan) // self.world_size
        share = plan[self.rank::self.world_size][:per_rank]
        self._planned = (key, share)
        return share

    def epoch(self, epoch: int, start: int = 0) -> Iterator:
        """This rank's batches of ``epoch``, from batch number ``start`` on."""
        for ids in self.plan(epoch)[start:]:
            yield self.batch(ids.tolist())

    def num_batches(self, epoch: int) -> int:
        return len(self.plan(epoch))

    def in_order(self, batch_size: int = 64) -> Iterator:
        """Every example once, in corpus order (evaluation)."""
        for start in range(0, len(self.lengths), batch_size):
            yield self.batch(range(start, min(start + batch_size, len(self.lengths))))


class ParallelBatches(BucketedBatches):
    """Batches of encoded sentence pairs (translation)."""

    def __init__(self, src: list[list[int]], tgt: list[list[int]], batch_tokens: int,
                 seed: int, max_sentences: int | None = None, rank: int = 0,
                 world_size: int = 1) -> None:
        super().__init__(self.pair_lengths(src, tgt), batch_tokens, seed, max_sentences, rank,
                         world_size)
        self.src, self.tgt = src, tgt

    @staticmethod
    def pair_lengths(src: list[list[int]], tgt: list[list[int]]) -> list[int]:
        """The length each pair is bucketed by: its longer side, +1 for the EOS (source, target)
        or BOS (decoder input) each side gets."""
        return [max(len(s), len(t)) + 1 for s, t in zip(src, tgt)]

    def batch(self, ids: Sequence[int]) -> Batch:
        return make_batch([self.src[i] for i in ids], [self.tgt[i] for i in ids], ids)


class ResampledParallelBatches(ParallelBatches):
    """Parallel batches whose pairs are re-encoded every epoch by ``resample(epoch)`` (subword
    sampling), so each epoch sees other segmentations of the same sentences.

    ``resample`` must return the same pairs in the same order, and the same result for the same
    epoch, so that a resumed run replays the epoch it stopped in. A sampled pair with an empty side
    or a side over ``max_length`` pieces falls back to its pair in ``src``/``tgt``.
    """

    def __init__(self, src: list[list[int]], tgt: list[list[int]],
                 resample: Callable[[int], tuple[list[list[int]], list[list[int]]]],
                 max_length: int, batch_tokens: int, seed: int, max_sentences: int | None = None,
                 rank: int = 0, world_size: int = 1) -> None:
        super().__init__(src, tgt, batch_tokens, seed, max_sentences, rank, world_size)
        self.fixed_src, self.fixed_tgt = src, tgt
        self.resample, self.max_length = resample, max_length
        self.sampled_epoch: int | None = None

    def plan(self, epoch: int) -> list[np.ndarray]:
        if epoch != self.sampled_epoch:
            self.src, self.tgt = self._sampled_pairs(epoch)
            self.lengths = self.pair_lengths(self.src, self.tgt)
            self.sampled_epoch = epoch
        return super().plan(epoch)

    def _sampled_pairs(self, epoch: int) -> tuple[list[list[int]], list[list[int]]]:
        src, tgt = self.resample(epoch)
        if len(src) != len(self.fixed_src) or len(tgt) != len(self.fixed_tgt):
            raise ValueError(f"resample({epoch}) returned {len(src)}/{len(tgt)} sequences for "
                             f"{len(self.fixed_src)} pairs")
        out_src, out_tgt = [], []
        for s, t, fixed_s, fixed_t in zip(src, tgt, self.fixed_src, self.fixed_tgt):
            usable = s and t and len(s) <= self.max_length and len(t) <= self.max_length
            out_src.append(s if usable else fixed_s)
            out_tgt.append(t if usable else fixed_t)
        return out_src, out_tgt

    def in_order(self, batch_size: int = 64) -> Iterator:
        """Every pair once, in corpus order, with its fixed (most likely) segmentation."""
        for start in range(0, len(self.fixed_src), batch_size):
            ids = range(start, min(start + batch_size, len(self.fixed_src)))
            yield make_batch([self.fixed_src[i] for i in ids], [self.fixed_tgt[i] for i in ids], ids)


@dataclass(frozen=True)
class PairFilter:
    """Which training pairs are kept: no empty side, no side over ``max_length`` pieces, and
    (``max_ratio``) no side more than that many times as long as the other, in pieces."""

    max_length: int
    max_ratio: Optional[float] = None
    limit: Optional[int] = None  # only the first ``limit`` pairs of the files (data.limit_train)

    def keep(self, src_len: np.ndarray, tgt_len: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
        """A mask of the kept pairs given their sides' lengths, and the counts of those dropped
        (each pair counted for the first rule it breaks: empty, too long, length ratio)."""
        src_len, tgt_len = np.asarray(src_len, np.int64), np.asarray(tgt_len, np.int64)
        empty = (src_len == 0) | (tgt_len == 0)
        too_long = ~empty & ((src_len > self.max_length) | (tgt_len > self.max_length))
        ratio = np.zeros_like(empty)
        if self.max_ratio is not None:
            longer, shorter = np.maximum(src_len, tgt_len), np.minimum(src_len, tgt_len)
            ratio = ~empty & ~too_long & (longer > self.max_ratio * shorter)
        counts = {"empty": int(empty.sum()), "too_long": int(too_long.sum()),
                  "length_ratio": int(ratio.sum())}
        return ~(empty | too_long | ratio), counts

    def kept_indices(self, src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]]
                     ) -> tuple[list[int], dict[str, int]]:
        """``keep`` for encoded pairs: the indices of those kept, and the counts of the others."""
        kept, counts = self.keep(np.fromiter(map(len, src), np.int64, len(src)),
                                 np.fromiter(map(len, tgt), np.int64, len(tgt)))
        return np.flatnonzero(kept).tolist(), counts

    def describe(self, counts: dict[str, int], kept: int, name: str = "train") -> str:
        """The log line for a split's dropped pairs."""
        ratio = f" and {counts['length_ratio']} with a length ratio over {self.max_ratio:g}" \
            if self.max_ratio is not None else ""
        return (f"{name}: dropped {counts['empty']} pairs with an empty side and "
                f"{counts['too_long']} pairs over {self.max_length} pieces{ratio}; {kept} kept")


def kept_pairs(src: list[list[int]], tgt: list[list[int]], max_length: int,
               name: str = "train", max_ratio: float | None = None) -> list[int]:
    """Indices of the pairs that ``PairFilter(max_length, max_ratio)`` keeps; logs the counts of
    the others."""
    pair_filter = PairFilter(max_length, max_ratio)
    keep, counts = pair_filter.kept_indices(src, tgt)
    if any(counts.values()):
        log.info("%s", pair_filter.describe(counts, len(keep), name))
    return keep


def filter_pairs(src: list[list[int]], tgt: list[list[int]], max_length: int,
                 name: str = "train") -> tuple[list[list[int]], list[list[int]]]:
    """Drop pairs with an empty side or a side over ``max_length`` pieces, logging the counts."""
    keep = kept_pairs(src, tgt, max_length, name)
    return [src[i] for i in keep], [tgt[i] for i in keep]


def groups_of(batches: Iterator[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive groups of ``size`` batches (the last one may be shorter): one update each."""
    group: list[Any] = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group
