"""RNNEncoder: embeddings and a stacked, optionally bidirectional, optionally residual RNN."""

from __future__ import annotations

from typing import Literal, NamedTuple, Optional, get_args

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.errors import check_choice, check_range
from seq2seq.models.dropout import Dropout, drop_tokens
from seq2seq.models.pretrained import check_pretrained_options, freeze_matched_rows
from seq2seq.models.rnn import Cell, build_rnn, check_rnn_options, has_cell_state, run_unpacked
from seq2seq.tokenization import PAD

# How a bidirectional encoder joins its two directions: side by side (H*2 per position) or added
# (H), as OpenNMT-py's ``brnn_merge`` and ``nn.LSTM(..., bidirectional)`` users often do to keep
# the decoder's attention and bridge at the size of one direction.
Merge = Literal["concat", "sum"]
MERGES: tuple[str, ...] = get_args(Merge)


class EncoderOutput(NamedTuple):
    states: Tensor  # [B, S, O] one vector per source position (zeros on padding); O: output_size
    final: Tensor   # [layers, B, O] last hidden state per layer, directions merged as the states
    mask: Tensor    # [B, S] True on real tokens

    def index_select(self, order: Tensor) -> "EncoderOutput":
        """Reorder or repeat the batch (beam search)."""
        return EncoderOutput(self.states.index_select(0, order), self.final.index_select(1, order),
                             self.mask.index_select(0, order))


def mostly_real(lengths: Tensor, padded_length: int, share: float = 0.8) -> bool:
    """Whether real tokens fill at least ``share`` of the padded batch: then running the RNN over
    the padding (``run_unpacked``) costs less than a packed run (about 1.3x slower per real step)."""
    return int(lengths.sum()) >= share * lengths.numel() * padded_length


class RNNEncoder(nn.Module):
    """Encode a right-padded batch of token ids into one state per position and a summary."""

    def __init__(self, vocab_size: int, *, cell: Cell, embedding_dim: int, hidden_size: int,
                 num_layers: int, bidirectional: bool, dropout: float, residual: bool,
                 implementation: str, word_dropout: float, extra_input_size: int = 0,
                 merge: Merge = "concat", pretrained_embeddings: Optional[str] = None,
                 freeze_embeddings: bool = False) -> None:
        """The options are ``conf/model/encoder``'s (the defaults here are only those of
        configs written before an option existed).
        ``extra_input_size``: features the caller adds to each position's embedding (e.g. the
        tagger's byte-level word features); ``forward`` then takes them as ``extra``.
        ``word_dropout``: in training, each source token is read as UNK with this probability
        (``drop_tokens``). ``merge``: a bidirectional encoder's directions concatenated
        (``output_size`` 2H) or summed (H). ``pretrained_embeddings``: a word-vector file that
        the topology loads into the embedding table at the start of a fresh run
        (``seq2seq/models/pretrained.py``); ``freeze_embeddings``: the rows it matched keep
        their vectors in training."""
        super().__init__()
        check_rnn_options(cell, hidden_size, num_layers, dropout, "model.encoder", implementation)
        check_range("model.encoder.embedding_dim", embedding_dim, 1)
        check_range("model.encoder.word_dropout", word_dropout, 0.0, 1.0)
        check_choice("model.encoder.merge", merge, MERGES)
        check_pretrained_options("model.encoder", pretrained_embeddings, freeze_embeddings)
        self.word_dropout = word_dropout
        self.cell, self.num_layers, self.bidirectional = cell, num_layers, bidirectional
        self.hidden_size, self.merge = hidden_size, merge
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD)
        self.pretrained_embeddings, self.freeze_embeddings = pretrained_embeddings, freeze_embeddings
        if freeze_embeddings:
            freeze_matched_rows(self, self.embedding)
        self.dropout = Dropout(dropout)
        self.rnn = build_rnn(cell, embedding_dim + extra_input_size, hidden_size, num_layers,
                             bidirectional, dropout, residual, implementation)
        self.output_size = hidden_size * (2 if bidirectional and merge == "concat" else 1)

    def forward(self, src: Tensor, src_len: Tensor, extra: Optional[Tensor] = None
                ) -> EncoderOutput:
        """src: [B, S] token ids; src_len: [B] true lengths (>= 1); extra: [B, S, X] features
        concatenated to the embeddings (``extra_input_size`` X)."""
        embedded = self.embedding(drop_tokens(src, self.word_dropout, self.training))  # [B, S, E]
        if extra is not None:
            embedded = torch.cat([embedded, extra], dim=-1)
        embedded = self.dropout(embedded)
        # On a GPU the packed batch is one cuDNN call for the whole stack, padding skipped; the
        # padded run is a CPU (oneDNN) optimisation.
        if isinstance(self.rnn, nn.RNNBase) and embedded.device.type == "cpu" \
                and mostly_real(src_len, src.size(1)):
            states, hidden = run_unpacked(self.rnn, embedded, src_len)
        else:
            # Packing skips the padding, so a padded sentence encodes exactly as it would alone.
            # enforce_sorted=False: batches are bucketed, not sorted; callers expect their order.
            # The lengths must be on the CPU (torch packs on the host).
            packed = pack_padded_sequence(embedded, src_len.cpu(), batch_first=True,
                                          enforce_sorted=False)
            outputs, hidden = self.rnn(packed)
            states, _ = pad_packed_sequence(outputs, batch_first=True, total_length=src.size(1))
            if has_cell_state(self.cell):
                hidden = hidden[0]  # the bridge starts the decoder from h; c stays internal
        states, final = self.merge_directions(states, hidden)
        return EncoderOutput(self.dropout(states), final, src != PAD)

    def merge_directions(self, states: Tensor, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """The RNN's top-layer outputs [B, S, H*dirs] ([forward; backward] halves) and final
        states [layers*dirs, B, H] (torch.nn's order) -> the encoder's states [B, S, O] and final
        [layers, B, O], the directions concatenated or summed (``merge``)."""
        dirs = 2 if self.bidirectional else 1
        final = hidden.view(self.num_layers, dirs, *hidden.shape[1:])  # [layers, dirs, B, H]
        if dirs == 1:
            return states, final[:, 0]
        if self.merge == "sum":
            forward, backward = states.split(self.hidden_size, dim=-1)
            return forward + backward, final.sum(1)
        return states, torch.cat(final.unbind(1), dim=-1)
