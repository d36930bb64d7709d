"""Models that label their input: N vs 1 (``SequenceClassifier``: one class per utterance) and
N vs N (``SequenceTagger``: one tag per word, optionally with the utterance's class too).

Both read the input with the same ``RNNEncoder`` as translation does.
"""

from __future__ import annotations

from typing import Callable, Literal, NamedTuple, Optional

import torch
from torch import Tensor, nn

from seq2seq.errors import ConfigError, check_choice, check_range
from seq2seq.models.crf import CRF
from seq2seq.models.dropout import Dropout
from seq2seq.models.encoder import EncoderOutput, RNNEncoder
from seq2seq.tokenization import EOS, PAD, UNK

PoolingName = Literal["final", "attention", "mean", "max"]
POOLINGS = ("final", "attention", "mean", "max")


class Pooling(nn.Module):
    """One vector for a whole utterance from the encoder's output.

    final: the last state of each direction (top layer); attention: a learned weighted sum of the
    states (Lin et al., 2017, one head); mean / max: over the real positions.
    """

    def __init__(self, kind: PoolingName, size: int, prefix: str = "model.pooling") -> None:
        super().__init__()
        check_choice(prefix, kind, POOLINGS)
        self.kind = kind
        if kind == "attention":
            self.score = nn.Sequential(nn.Linear(size, size), nn.Tanh(), nn.Linear(size, 1))

    def forward(self, encoded: EncoderOutput) -> Tensor:
        states, mask = encoded.states, encoded.mask  # [B, S, H], [B, S]
        if self.kind == "final":
            return encoded.final[-1]
        if self.kind == "max":
            return states.masked_fill(~mask.unsqueeze(-1), float("-inf")).max(dim=1).values
        if self.kind == "mean":
            return (states * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
        scores = self.score(states).squeeze(-1).masked_fill(~mask, float("-inf"))
        return (torch.softmax(scores, dim=1).unsqueeze(-1) * states).sum(1)


def _head(size: int, hidden: int, outputs: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(size, hidden), nn.Tanh(), Dropout(dropout),
                         nn.Linear(hidden, outputs))


class SequenceClassifier(nn.Module):
    """N vs 1: encoder, pooling, then a one-hidden-layer classifier.

    ``multi_label``: each utterance has a set of labels (``#``-joined in the label file): the
    head's outputs are one sigmoid per label, trained by binary cross-entropy, and an utterance
    takes every label whose probability is above ``threshold`` (at least its most likely one);
    otherwise they are a softmax over the classes (``topologies/labelling/inference.py``).
    """

    def __init__(self, src_vocab_size: int, num_labels: int,
                 encoder: Callable[..., RNNEncoder], *, pooling: PoolingName,
                 hidden_size: int, dropout: float, multi_label: bool = False,
                 threshold: float = 0.5) -> None:
        super().__init__()
        check_range("model.hidden_size", hidden_size, 1)
        check_range("model.dropout", dropout, 0.0, 1.0)
        check_range("model.threshold", threshold, 0.0, 1.0)
        self.multi_label, self.threshold = multi_label, threshold
        self.encoder = encoder(vocab_size=src_vocab_size)
        self.pooling = Pooling(pooling, self.encoder.output_size)
        self.classifier = _head(self.encoder.output_size, hidden_size, num_labels, dropout)

    def forward(self, src: Tensor, src_len: Tensor, word_starts: Optional[Tensor] = None,
                word_ends: Optional[Tensor] = None, word_bytes: Optional[Tensor] = None,
                word_lexicon: Optional[Tensor] = None, word_ids: Optional[Tensor] = None) -> Tensor:
        """Class logits [B, num_labels] (a multi-label model's: one independent logit a label)."""
        return self.classifier(self.pooling(self.encoder(src, src_len)))


class TaggerOutput(NamedTuple):
    tag_logits: Tensor               # [B, W, num_tags]: one row per word
    label_logits: Optional[Tensor]   # [B, num_labels] with a joint class head, else None


WordState = Literal["first", "span"]


class ByteWordFeatures(nn.Module):
    """A vector per word from its UTF-8 bytes: byte embeddings, a width-3 convolution and max
    pooling over the word (the character CNN of Ma & Hovy, 2016, on bytes). It lets the tagger
    see the spelling of names and numbers that the piece vocabulary splits or misses."""

    def __init__(self, filters: int, byte_dim: int = 32, width: int = 3) -> None:
        super().__init__()
        self.embedding = nn.Embedding(257, byte_dim, padding_idx=0)  # byte + 1; 0 pads
        self.conv = nn.Conv1d(byte_dim, filters, width, padding=width // 2)

    def forward(self, word_bytes: Tensor) -> Tensor:
        """word_bytes [B, W, L] -> [B, W, filters] (zeros for padding words)."""
        batch, words, length = word_bytes.shape
        flat = word_bytes.reshape(batch * words, length)
        hidden = torch.relu(self.conv(self.embedding(flat).transpose(1, 2)))  # [BW, F, L]
        hidden = hidden.masked_fill((flat == 0).unsqueeze(1), 0.0)  # relu >= 0: 0 is neutral
        return hidden.max(dim=2).values.view(batch, words, -1)


def piece_words(word_starts: Tensor, length: int) -> Tensor:
    """The word each piece belongs to [B, S], from the words' first pieces [B, W] (EOS and
    padding fall to the last word)."""
    marks = torch.zeros(word_starts.size(0), length, dtype=torch.long, device=word_starts.device)
    marks.scatter_(1, word_starts, 1)
    return (marks.cumsum(1) - 1).clamp(min=0)


class SequenceTagger(nn.Module):
    """N vs N: one tag per word, from the encoder states of its pieces.

    ``word_state="first"``: the state at the word's first piece. ``"span"`` (bidirectional
    encoders): the forward state at its last piece and the backward state at its first, so each
    direction has read the whole word, however many pieces it has.

    With ``num_labels`` > 0 (a joint model, Liu & Lane, 2016) a pooled class head shares the
    encoder, and the word states also see the pooled utterance vector. ``byte_features`` > 0
    adds that many byte-CNN features of its word to every piece's embedding; ``crf`` puts a CRF
    over the tag scores (trained on whole-sequence likelihood, decoded by Viterbi);
    ``word_dropout`` replaces each word's pieces by UNK with that probability in training, so the
    model learns to tag a name from its context and spelling, as it must for names it never saw.
    ``lexicon_features`` > 0 adds that many dimensions per word from its slot-lexicon matches
    (``seq2seq/data/lexicon.py``; ``num_lexicon`` feature ids, given by the topology): the sum
    of a learned vector per (slot type, B/I) match. ``word_embeddings`` > 0 adds a learned
    vector of that size per whole word (``num_words`` ids of the topology's ``WordVocab``), so
    a word the piece vocabulary splits (``showtime``: ``show`` + ``time``) has one vector of its
    own; word dropout drops it to the unknown word with the pieces.
    """

    def __init__(self, src_vocab_size: int, num_tags: int, encoder: Callable[..., RNNEncoder],
                 *, num_labels: int, num_lexicon: int, num_words: int, joint: bool,
                 pooling: PoolingName, hidden_size: int, dropout: float, word_state: WordState,
                 byte_features: int, crf: bool, word_dropout: float, lexicon_features: int,
                 word_embeddings: int) -> None:
        super().__init__()
        check_range("model.hidden_size", hidden_size, 1)
        check_choice("model.word_state", word_state, ("first", "span"))
        check_range("model.dropout", dropout, 0.0, 1.0)
        check_range("model.byte_features", byte_features, 0)
        check_range("model.word_dropout", word_dropout, 0.0, 1.0)
        check_range("model.lexicon_features", lexicon_features, 0)
        check_range("model.word_embeddings", word_embeddings, 0)
        self.word_dropout = word_dropout
        self.bytes = ByteWordFeatures(byte_features) if byte_features else None
        # The sum of the matched features' vectors: a linear map of the multi-hot matches.
        self.lexicon = nn.EmbeddingBag(num_lexicon + 1, lexicon_features, mode="sum",
                                       padding_idx=0) if lexicon_features and num_lexicon else None
        self.words = nn.Embedding(num_words, word_embeddings, padding_idx=PAD) \
            if word_embeddings and num_words else None
        extra_size = byte_features + (lexicon_features if self.lexicon is not None else 0) \
            + (word_embeddings if self.words is not None else 0)
        self.encoder = encoder(vocab_size=src_vocab_size, extra_input_size=extra_size)
        self.span = word_state == "span" and self.encoder.bidirectional
        if self.span and self.encoder.merge == "sum":
            raise ConfigError("model.word_state=span reads the forward and backward halves of "
                              "the encoder's states, which model.encoder.merge=sum adds "
                              "together; set model.word_state=first or merge=concat")
        size = self.encoder.output_size
        self.joint = joint and num_labels > 0
        self.pooling = Pooling(pooling, size) if self.joint else None
        self.classifier = _head(size, hidden_size, num_labels, dropout) if self.joint else None
        self.tagger = _head(size * (2 if self.joint else 1), hidden_size, num_tags, dropout)
        self.crf = CRF(num_tags) if crf else None

    def forward(self, src: Tensor, src_len: Tensor, word_starts: Tensor,
                word_ends: Optional[Tensor] = None, word_bytes: Optional[Tensor] = None,
                word_lexicon: Optional[Tensor] = None, word_ids: Optional[Tensor] = None
                ) -> TaggerOutput:
        """Tag scores per word (the CRF's emissions when it has one), and class logits."""
        dropped = torch.rand(word_starts.shape, device=word_starts.device) < self.word_dropout \
            if self.training and self.word_dropout > 0 else None                       # [B, W]
        if dropped is not None and word_ids is not None:
            word_ids = word_ids.masked_fill(dropped & (word_ids != PAD), UNK)
        word_features = self.word_features(word_bytes, word_lexicon, word_ids)  # [B, W, F] / None
        extra = None  # [B, S, F] the word features at each piece
        if dropped is not None or word_features is not None:
            owners = piece_words(word_starts, src.size(1))
            if dropped is not None:
                in_dropped_word = dropped.gather(1, owners)
                src = src.masked_fill(in_dropped_word & (src != PAD) & (src != EOS), UNK)
            if word_features is not None:
                extra = _at(word_features, owners)
        encoded = self.encoder(src, src_len, extra)
        words = self.word_states(encoded.states, word_starts, word_ends)
        label_logits = None
        if self.pooling is not None and self.classifier is not None:  # a joint model
            utterance = self.pooling(encoded)
            label_logits = self.classifier(utterance)
            words = torch.cat([words, utterance.unsqueeze(1).expand_as(words)], dim=-1)
        return TaggerOutput(self.tagger(words), label_logits)

    def word_features(self, word_bytes: Optional[Tensor], word_lexicon: Optional[Tensor],
                      word_ids: Optional[Tensor] = None) -> Optional[Tensor]:
        """[B, W, F] the byte-CNN, lexicon and word-embedding features of each word, or None
        without any."""
        parts = []
        if self.bytes is not None:
            if word_bytes is None:
                raise ValueError("this tagger has byte features: pass word_bytes")
            parts.append(self.bytes(word_bytes))
        if self.lexicon is not None:
            if word_lexicon is None:
                raise ValueError("this tagger has lexicon features: pass word_lexicon")
            batch, words, most = word_lexicon.shape
            bags = self.lexicon(word_lexicon.reshape(batch * words, most))
            parts.append(bags.view(batch, words, -1))
        if self.words is not None:
            if word_ids is None:
                raise ValueError("this tagger has word embeddings: pass word_ids")
            parts.append(self.words(word_ids))
        return torch.cat(parts, -1) if parts else None

    def word_states(self, states: Tensor, word_starts: Tensor, word_ends: Optional[Tensor]
                    ) -> Tensor:
        """One vector per word [B, W, H] from the piece states [B, S, H]."""
        words = _at(states, word_starts)
        if self.span and word_ends is not None:
            half = words.size(-1) // 2  # [forward; backward] halves of a bidirectional state
            words = torch.cat([_at(states, word_ends)[..., :half], words[..., half:]], -1)
        return words


def _at(states: Tensor, positions: Tensor) -> Tensor:
    """states [B, S, H] at positions [B, W] -> [B, W, H]."""
    return states.gather(1, positions.unsqueeze(-1).expand(-1, -1, states.size(-1)))

