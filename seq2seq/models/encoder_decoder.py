"""EncoderDecoder: N vs M, encode a source sentence and decode a target sentence (translation)."""

from __future__ import annotations

from typing import Callable, Optional

from torch import Tensor, nn

from seq2seq.errors import ConfigError
from seq2seq.models.attention import AttentionName
from seq2seq.models.decoder import DecoderOutput, DecoderState, Memory, RNNDecoder
from seq2seq.models.encoder import RNNEncoder


class EncoderDecoder(nn.Module):
    """An RNN encoder and an RNN decoder joined by a bridge and (optionally) attention.

    ``share_embeddings``: the encoder reads its input through the decoder's embedding matrix
    (with the decoder's ``tie_embeddings``, one matrix serves all three roles: Press & Wolf,
    2017; fairseq's ``--share-all-embeddings``). It needs one vocabulary for both languages
    (``tokenizer.joint=true``) and equal embedding sizes.
    """

    def __init__(self, encoder: Callable[..., RNNEncoder], decoder: Callable[..., RNNDecoder],
                 src_vocab_size: int, tgt_vocab_size: int,
                 *, attention: AttentionName, share_embeddings: bool) -> None:
        super().__init__()
        self.encoder = encoder(vocab_size=src_vocab_size)
        self.decoder = decoder(vocab_size=tgt_vocab_size, context_size=self.encoder.output_size,
                               attention=attention)
        if share_embeddings:
            self._share_embeddings()

    def _share_embeddings(self) -> None:
        source, target = self.encoder.embedding, self.decoder.embedding
        if source.num_embeddings != target.num_embeddings:
            raise ConfigError(
                "model.share_embeddings=true needs one vocabulary for both sides "
                f"(tokenizer.joint=true); got {source.num_embeddings} source and "
                f"{target.num_embeddings} target pieces")
        if source.embedding_dim != target.embedding_dim:
            raise ConfigError(
                "model.share_embeddings=true needs model.encoder.embedding_dim == "
                f"model.decoder.embedding_dim; got {source.embedding_dim} and "
                f"{target.embedding_dim}")
        if self.encoder.pretrained_embeddings or self.encoder.freeze_embeddings:
            # The encoder's own table is replaced: its vectors and frozen rows would be lost.
            raise ConfigError("model.share_embeddings=true: the encoder reads the decoder's "
                              "embeddings; set model.decoder.pretrained_embeddings and "
                              "freeze_embeddings instead of model.encoder's")
        self.encoder.embedding.weight = self.decoder.embedding.weight

    def encode(self, src: Tensor, src_len: Tensor) -> tuple[Memory, DecoderState]:
        """Encode a batch and prepare what decoding starts from."""
        memory = self.decoder.memory(self.encoder(src, src_len))
        return memory, self.decoder.init_state(memory)

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor,
                teacher_forcing_ratio: float = 1.0, output_mask: Optional[Tensor] = None,
                project: bool = True) -> DecoderOutput:
        """Logits [B, T, V] for each target position (or [N, V] for the N positions where
        ``output_mask`` [B, T] is true; or, ``project=False``, the readouts for
        ``decoder.output_loss``). src: [B, S]; tgt_in: [B, T]."""
        memory, state = self.encode(src, src_len)
        return self.decoder(tgt_in, memory, state, teacher_forcing_ratio, output_mask, project)
