"""A linear-chain conditional random field over per-word tag scores (Lafferty et al., 2001), the
output layer of BiLSTM-CRF taggers (Huang et al., 2015; Lample et al., 2016).

The tagger's per-word scores are the emissions; the CRF adds a learned score for every move from
one tag to the next (and for starting and ending on each tag) and trains on the log-likelihood of
the whole gold sequence, so it learns which tag sequences are well formed instead of scoring each
word alone.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from seq2seq.tokenization import IGNORE


class CRF(nn.Module):
    """Transition scores and the sequence log-likelihood; decoding is ``viterbi`` in
    ``models/tag_decoding.py``, given ``decoding_scores()``."""

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))  # [from, to]

    def nll(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Negative log-likelihood of the gold tag sequences, summed over the batch.

        emissions [B, W, T]; tags [B, W] (IGNORE on padding); mask [B, W] True on real words. A
        row with an IGNORE tag on a real word (a tag unseen in training) has no gold path and is
        left out.
        """
        emissions = emissions.float()  # bf16 under trainer.precision=bf16: sum paths in fp32
        complete = ((tags != IGNORE) | ~mask).all(1) & mask[:, 0]
        if not bool(complete.any()):
            return emissions.sum() * 0.0
        emissions, tags, mask = emissions[complete], tags[complete], mask[complete]
        return (self.log_partition(emissions, mask) - self.gold_score(emissions, tags, mask)).sum()

    def gold_score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Score of each row's gold path [B]."""
        tags = tags.clamp(min=0)  # padding positions are masked out below
        emitted = emissions.gather(2, tags.unsqueeze(-1)).squeeze(-1)          # [B, W]
        moves = self.transitions[tags[:, :-1], tags[:, 1:]]                    # [B, W-1]
        score = self.start[tags[:, 0]] + (emitted * mask).sum(1) + (moves * mask[:, 1:]).sum(1)
        last = tags.gather(1, (mask.sum(1, keepdim=True) - 1)).squeeze(1)
        return score + self.end[last]

    def log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """log of the summed exp-scores of every tag path of each row [B] (forward algorithm)."""
        alpha = self.start + emissions[:, 0]                                   # [B, T]
        for t in range(1, emissions.size(1)):
            step = torch.logsumexp(alpha.unsqueeze(2) + self.transitions, dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t].unsqueeze(1), step, alpha)
        return torch.logsumexp(alpha + self.end, dim=1)

    def decoding_scores(self, start: Optional[Tensor] = None, moves: Optional[Tensor] = None
                        ) -> tuple[Tensor, Tensor, Tensor]:
        """(start [T], transitions [T, T], end [T]) for Viterbi, plus optional hard constraints
        (additive 0 / -inf scores such as ``bio_transitions``)."""
        # the constraints are built on the CPU, the scores live with the model
        begin = self.start if start is None else self.start + start.to(self.start.device)
        transitions = self.transitions if moves is None else \
            self.transitions + moves.to(self.transitions.device)
        return begin.detach(), transitions.detach(), self.end.detach()
