"""Turn token-id sequences into padded batches under a token budget, grouped by length."""

from __future__ import annotations

import logging
import random
from typing import Any, Callable, Iterator, NamedTuple, Sequence

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
    """Group example indices into batches of similar length.

    Each batch's padded size (sentences x longest length) stays within ``batch_tokens``, so short
    sentences come in large batches and long ones in small batches, and little padding is computed.
    With ``shuffle``, ties in length are broken at random and the batch order is shuffled, both from
    ``seed`` (fairseq's and OpenNMT-py's bucketing).
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    if shuffle:
        rng.shuffle(order)
    order.sort(key=lambda i: lengths[i])  # stable: shuffled order survives among equal lengths
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        grown = max(longest, lengths[i])
        full = max_sentences is not None and len(current) >= max_sentences
        if current and (grown * (len(current) + 1) > batch_tokens or full):
            batches.append(current)
            current, grown = [], lengths[i]
        current.append(i)
        longest = grown
    if current:
        batches.append(current)
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

    def __init__(self, lengths: list[int], batch_tokens: int, seed: int,
                 max_sentences: int | None = None, rank: int = 0, world_size: int = 1) -> None:
        self.lengths = lengths
        self.batch_tokens, self.seed, self.max_sentences = batch_tokens, seed, max_sentences
        self.rank, self.world_size = rank, world_size

    def batch(self, ids: Sequence[int]):
        raise NotImplementedError

    def plan(self, epoch: int) -> list[list[int]]:
        """This rank's batches of ``epoch`` (seeded by seed + epoch) as lists of example indices."""
        plan = length_batches(self.lengths, self.batch_tokens, shuffle=True,
                              seed=self.seed + epoch, max_sentences=self.max_sentences)
        per_rank = len(plan) // self.world_size
        return plan[self.rank::self.world_size][:per_rank]

    def epoch(self, epoch: int, start: int = 0) -> Iterator:
        """This rank's batches of ``epoch``, from batch number ``start`` on."""
        for ids in self.plan(epoch)[start:]:
            yield self.batch(ids)

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

    def plan(self, epoch: int) -> list[list[int]]:
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


def kept_pairs(src: list[list[int]], tgt: list[list[int]], max_length: int,
               name: str = "train") -> list[int]:
    """Indices of the pairs with no empty side and no side over ``max_length`` pieces; logs the
    counts of the others."""
    keep, empty, too_long = [], 0, 0
    for i, (s, t) in enumerate(zip(src, tgt)):
        if not s or not t:
            empty += 1
        elif len(s) > max_length or len(t) > max_length:
            too_long += 1
        else:
            keep.append(i)
    if empty or too_long:
        log.info("%s: dropped %d pairs with an empty side and %d pairs over %d pieces; %d kept",
                 name, empty, too_long, max_length, len(keep))
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
