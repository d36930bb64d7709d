"""The per-word tables a tagger may read beside each word's pieces, built from the training split
and saved in its checkpoints: the slot lexicon (``model.lexicon_features``,
``seq2seq/data/lexicon.py``) and the whole-word vocabulary (``model.word_embeddings``). One object
carries both from training to the checkpoint and back, so a new per-word feature has one place to
go."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from seq2seq.data.labelled import WordPieces, WordVocab, encode_words
from seq2seq.data.lexicon import SlotLexicon, WordFeatures
from seq2seq.tokenization import SentencePieceTokenizer


@dataclass(frozen=True)
class WordTables:
    """Either table may be None: the model has no such features."""

    lexicon: Optional[SlotLexicon] = None
    vocab: Optional[WordVocab] = None

    @property
    def num_lexicon(self) -> int:
        """Lexicon feature ids (the tagger's ``num_lexicon``), 0 without a lexicon."""
        return self.lexicon.num_features if self.lexicon is not None else 0

    @property
    def num_words(self) -> int:
        """Whole-word ids (the tagger's ``num_words``), 0 without a word vocabulary."""
        return len(self.vocab) if self.vocab is not None else 0

    def encode(self, tokenizer: SentencePieceTokenizer, utterances: Sequence[Sequence[str]],
               max_pieces: Optional[int] = None,
               lexicon_features: Optional[Sequence[WordFeatures]] = None
               ) -> list[WordPieces]:
        """``encode_words`` with the tables' features per word. ``lexicon_features``: use these
        instead of the lexicon's own matches (the training split's cross-fitted features)."""
        if lexicon_features is None and self.lexicon is not None:
            lexicon_features = [self.lexicon.features(words) for words in utterances]
        return encode_words(tokenizer, utterances, max_pieces, lexicon_features, self.vocab)

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint keys ``lexicon`` and ``word_vocab`` (None where there is no table)."""
        return {"lexicon": None if self.lexicon is None else self.lexicon.state_dict(),
                "word_vocab": None if self.vocab is None else self.vocab.words}

    @classmethod
    def from_state_dict(cls, payload: dict[str, Any]) -> "WordTables":
        """The tables of a checkpoint's payload (older checkpoints lack the keys: no tables)."""
        lexicon = payload.get("lexicon")
        words = payload.get("word_vocab")
        return cls(SlotLexicon.from_state_dict(lexicon) if lexicon else None,
                   WordVocab(words) if words is not None else None)
