"""Attention over encoder states: additive (Bahdanau) and multiplicative (Luong "general").

Both project the encoder states once per sentence (``project_keys``), so a decoding step costs one
small matmul per query plus the scores, not a projection of every source state again.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from seq2seq.errors import check_choice

AttentionName = Literal["none", "bahdanau", "luong"]
ATTENTIONS: tuple[str, ...] = ("none", "bahdanau", "luong")


class AttentionResult(NamedTuple):
    context: Tensor  # [B, T, Hv] weighted sum of the encoder states, per query
    weights: Tensor  # [B, T, S] attention distribution per query, 0 on padding


def _attend(scores: Tensor, values: Tensor, mask: Tensor) -> AttentionResult:
    """scores: [B, T, S]; values: [B, S, Hv]; mask: [B, S]."""
    weights = torch.softmax(scores.masked_fill(~mask.unsqueeze(1), float("-inf")), dim=-1)
    return AttentionResult(torch.bmm(weights, values), weights)


class BahdanauAttention(nn.Module):
    """score(q, k) = v^T tanh(W_q q + W_k k)  (Bahdanau et al., 2015, section 3.1)."""

    def __init__(self, query_size: int, key_size: int, hidden_size: int) -> None:
        super().__init__()
        self.key_layer = nn.Linear(key_size, hidden_size, bias=False)
        self.query_layer = nn.Linear(query_size, hidden_size, bias=False)
        self.energy_layer = nn.Linear(hidden_size, 1, bias=False)

    def project_keys(self, states: Tensor) -> Tensor:
        """states: [B, S, Hk] -> keys [B, S, A], computed once per sentence."""
        return self.key_layer(states)

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor) -> AttentionResult:
        """query: [B, T, Hq] (T queries at once, or T=1 for one decoding step); keys: [B, S, A];
        values: [B, S, Hv]; mask: [B, S] True on real tokens."""
        energy = torch.tanh(self.query_layer(query).unsqueeze(2) + keys.unsqueeze(1))  # [B,T,S,A]
        return _attend(self.energy_layer(energy).squeeze(-1), values, mask)


class LuongAttention(nn.Module):
    """score(q, k) = q^T W k, Luong et al. (2015) "general" score, section 3.1."""

    def __init__(self, query_size: int, key_size: int, hidden_size: int | None = None) -> None:
        super().__init__()
        self.key_layer = nn.Linear(key_size, query_size, bias=False)

    def project_keys(self, states: Tensor) -> Tensor:
        """states: [B, S, Hk] -> keys [B, S, Hq] (W k), computed once per sentence."""
        return self.key_layer(states)

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor) -> AttentionResult:
        """query: [B, T, Hq]; keys: [B, S, Hq]; values: [B, S, Hv]; mask: [B, S]."""
        return _attend(torch.bmm(query, keys.transpose(1, 2)), values, mask)  # scores [B, T, S]


def build_attention(name: str, query_size: int, key_size: int, hidden_size: int
                    ) -> BahdanauAttention | LuongAttention | None:
    """The attention module called ``name`` (None for "none")."""
    check_choice("model.attention", name, ATTENTIONS)
    if name == "bahdanau":
        return BahdanauAttention(query_size, key_size, hidden_size)
    if name == "luong":
        return LuongAttention(query_size, key_size)
    return None
