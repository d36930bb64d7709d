"""OutputLayer: the decoder's projection of readouts onto the target vocabulary, and its loss.

The weight [V, R] has no bias, so it can be the target embedding matrix itself (weight tying
assigns ``weight``). ``restrict`` makes the layer score a subset of the ids only: with a joint
vocabulary of both languages about a quarter of the pieces never occur in the targets, and the
output layer and its softmax are the largest part of a training step. The kept ids are a buffer
of the state dict, so a checkpoint rebuilds the same restriction (``_load_from_state_dict``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.models.cross_entropy import linear_cross_entropy
from seq2seq.tokenization import SPECIALS, UNK


class OutputLayer(nn.Module):
    """Readouts [..., R] -> logits over every target id, or over the kept ids of a restricted layer
    (ascending, the special ids first at their own numbers)."""

    weight: Tensor               # [V, R] a Parameter (weight tying assigns the embedding's)
    output_ids: Tensor | None    # [K] the kept ids (``restrict``); None: every id is scored
    _positions: Tensor | None    # [V] id -> its column among the kept ids; not saved

    def __init__(self, readout_size: int, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.weight = nn.Parameter(torch.empty(vocab_size, readout_size))
        # nn.Linear's initialization (the layer used to be one): the same numbers for a seed.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.register_buffer("output_ids", None)
        self.register_buffer("_positions", None, persistent=False)

    def restrict(self, ids: Tensor) -> Tensor:
        """Score only the target ids ``ids`` (any order, repeats allowed; the special ids are
        always kept); returns the kept ids [K], ascending. Ids outside the list (a validation
        target that training never used) map to UNK's column (``columns``)."""
        device = self.weight.device
        ids = torch.unique(torch.cat([torch.as_tensor(ids, dtype=torch.long, device=device).flatten(),
                                      torch.arange(len(SPECIALS), device=device)]))
        if ids.min() < 0 or ids.max() >= self.vocab_size:
            raise ValueError(f"output ids must lie in [0, {self.vocab_size}), got "
                             f"{int(ids.min())}..{int(ids.max())}")
        self.output_ids = ids
        positions = torch.full((self.vocab_size,), UNK, dtype=torch.long, device=device)
        positions[ids] = torch.arange(len(ids), device=device)
        self._positions = positions
        return ids

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              local_metadata: dict[str, Any], strict: bool, missing_keys: list[str],
                              unexpected_keys: list[str], error_msgs: list[str]) -> None:
        # The kept ids decide what every column means, and the column map (not saved) is built
        # from this layer's own ids: a state whose ids differ would load without complaint (same
        # length) or with torch's shape message. An unrestricted layer takes the saved ids, so a
        # checkpoint rebuilds its model without knowing about the restriction.
        saved = state_dict.get(prefix + "output_ids")
        if saved is not None and self.output_ids is None:
            try:
                self.restrict(saved)
            except ValueError:  # ids beyond this vocabulary: torch names the weight's other shape
                pass
        elif saved is not None and self.output_ids is not None \
                and not torch.equal(saved.to(self.output_ids.device), self.output_ids):
            other = " other ones" if len(saved) == len(self.output_ids) else ""
            error_msgs.append(
                f"{prefix}output_ids: the saved output layer scores {len(saved)} target ids, this "
                f"model {len(self.output_ids)}{other} (model.decoder.output_vocabulary="
                "training_targets keeps the ids its training targets use: were these trained on "
                "other data?)")
            return
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def kept_rows(self) -> Tensor:
        """[K, R] the rows of the weight that are scored (all V rows without a restriction)."""
        if self.output_ids is None:
            return self.weight
        return self.weight.index_select(0, self.output_ids)

    def decoding_rows(self) -> Tensor | None:
        """The kept rows [K, R], gathered once for a decoding loop without gradients (with them,
        each call gathers its own); None when there is nothing to gather or gradients are on."""
        return None if self.output_ids is None or torch.is_grad_enabled() else self.kept_rows()

    def forward(self, readout: Tensor, rows: Tensor | None = None) -> Tensor:
        """Logits [..., K] of readouts [..., R] over the kept ids; ``rows``: ``decoding_rows()``
        when the caller has them."""
        return F.linear(readout, self.kept_rows() if rows is None else rows)

    def scatter(self, logits: Tensor) -> Tensor:
        """Logits [B, K] over the kept ids -> [B, V] over every id, -inf for those left out."""
        if self.output_ids is None:
            return logits
        return logits.new_full((logits.size(0), self.vocab_size), float("-inf")) \
            .index_copy_(1, self.output_ids, logits)

    def columns(self, targets: Tensor) -> Tensor:
        """Target ids (any shape) -> their columns in the logits (PAD stays PAD)."""
        return targets if self._positions is None else self._positions[targets]

    def ids(self, columns: Tensor) -> Tensor:
        """Columns of the logits (any shape) -> the target ids they score."""
        return columns if self.output_ids is None else self.output_ids[columns]

    def loss(self, readout: Tensor, targets: Tensor, smoothing: float = 0.0) -> Tensor:
        """The label-smoothed cross-entropy, summed, of the logits of readouts [N, R] against
        target ids [N]: the same number and gradients as the logits' loss, computed in row chunks
        that never build the [N, K] logits (``linear_cross_entropy``)."""
        return linear_cross_entropy(readout, self.kept_rows(), self.columns(targets), smoothing)
