"""ConditionedGenerator: 1 vs N, one input (a class) conditions a generated sequence.

The class is embedded into a vector c, which starts the decoder (through the bridge) and is fed
to it at every step, as the classic one-to-many RNN does: the same ``RNNDecoder`` as translation
with ``attention="none"``, where c plays the part of the encoder's summary vector. With the
decoder's ``initial_state`` zeros or learned, c reaches it only through that per-step input.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn

from seq2seq.errors import check_range
from seq2seq.models.decoder import DecoderOutput, DecoderState, Memory, RNNDecoder


class ConditionedGenerator(nn.Module):
    def __init__(self, decoder: Callable[..., RNNDecoder], num_conditions: int,
                 tgt_vocab_size: int, *, condition_dim: int) -> None:
        super().__init__()
        check_range("model.condition_dim", condition_dim, 1)
        self.condition = nn.Embedding(num_conditions, condition_dim)
        self.decoder = decoder(vocab_size=tgt_vocab_size, context_size=condition_dim,
                               attention="none")

    def encode(self, conditions: Tensor, lengths: Tensor | None = None
               ) -> tuple[Memory, DecoderState]:
        """What decoding starts from, for conditions [B] (or [B, 1]: the search's "source")."""
        c = self.condition(conditions.reshape(-1))  # [B, C]
        mask = torch.ones(c.size(0), 1, dtype=torch.bool, device=c.device)
        memory = Memory(c.unsqueeze(1), None, mask, c)
        return memory, self.decoder.init_state(memory)

    def forward(self, conditions: Tensor, tgt_in: Tensor, teacher_forcing_ratio: float = 1.0,
                output_mask: Optional[Tensor] = None, project: bool = True) -> DecoderOutput:
        """Logits [B, T, V] for each position of the sequences; conditions [B], tgt_in [B, T].
        ``output_mask`` and ``project`` as in ``RNNDecoder.forward`` (readouts of the masked
        positions only, for ``decoder.output_loss``)."""
        memory, state = self.encode(conditions)
        return self.decoder(tgt_in, memory, state, teacher_forcing_ratio, output_mask, project)
