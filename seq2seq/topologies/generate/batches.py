"""(class, utterance) pairs and their batches, for the class-conditioned generator."""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch
from torch import Tensor

from seq2seq.data.batching import BucketedBatches, pad
from seq2seq.tokenization import BOS, EOS, PAD


class GenerationBatch(NamedTuple):
    conditions: Tensor  # [B] class ids
    tgt_in: Tensor      # [B, T] BOS + piece ids
    tgt_out: Tensor     # [B, T] piece ids + EOS
    indices: Tensor

    @property
    def num_tgt_tokens(self) -> int:
        return int((self.tgt_out != PAD).sum())


def make_generation_batch(conditions: Sequence[int], sequences: Sequence[Sequence[int]],
                          indices: Sequence[int]) -> GenerationBatch:
    tgt_in, _ = pad([[BOS] + list(s) for s in sequences])
    tgt_out, _ = pad([list(s) + [EOS] for s in sequences])
    return GenerationBatch(torch.as_tensor(list(conditions)), tgt_in, tgt_out,
                           torch.as_tensor(list(indices)))


class GenerationBatches(BucketedBatches):
    """(class, utterance) pairs bucketed by utterance length."""

    def __init__(self, conditions: list[int], sequences: list[list[int]], batch_tokens: int,
                 seed: int, max_sentences: Optional[int] = None, rank: int = 0,
                 world_size: int = 1) -> None:
        super().__init__([len(s) + 1 for s in sequences], batch_tokens, seed, max_sentences, rank,
                         world_size)
        self.conditions, self.sequences = conditions, sequences

    def batch(self, ids: Sequence[int]) -> GenerationBatch:
        return make_generation_batch([self.conditions[i] for i in ids],
                                     [self.sequences[i] for i in ids], ids)
