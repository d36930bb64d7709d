"""Whole-word embeddings beside the pieces (``model.word_embeddings``): the vocabulary, the
batches' word ids and the tagger's use of them."""

import pytest
import torch

from seq2seq.data.labelled import WordPieces, WordVocab, encode_words, make_labelled_batch
from seq2seq.data.lexicon import SlotLexicon
from seq2seq.data.word_tables import WordTables
from seq2seq.models.encoder import RNNEncoder
from seq2seq.models.labelling import SequenceTagger
from seq2seq.tokenization import PAD, UNK


def test_the_vocabulary_keeps_words_seen_twice_most_frequent_first():
    vocab = WordVocab.build([["play", "jazz"], ["play", "rock"], ["find", "jazz", "play"]])
    assert vocab.words == ["play", "jazz"]  # rock and find occur once
    assert len(vocab) == 4  # with padding and the unknown word
    assert vocab.encode(["jazz", "play", "blues"]) == [3, 2, UNK]
    assert WordVocab.build([["a", "b"], ["b"]], min_count=1).words == ["b", "a"]


class _LetterTokenizer:
    """A piece per letter (ids from 4), enough for encode_words."""

    def encode(self, texts):
        return [[4 + ord(c) - ord("a") for c in text] for text in texts]


def test_batches_carry_padded_word_ids():
    vocab = WordVocab.build([["play", "jazz"], ["play"]])
    pieces = encode_words(_LetterTokenizer(), [["play", "jazz", "now"], ["play"]],
                          word_vocab=vocab)
    batch = make_labelled_batch(pieces, None, None, [0, 1])
    assert batch.word_ids.tolist() == [[2, UNK, UNK], [2, PAD, PAD]]
    assert batch.word_ids.shape == batch.word_starts.shape
    assert make_labelled_batch(encode_words(_LetterTokenizer(), [["play"]]), None, None,
                               [0]).word_ids is None


def test_word_tables_encode_both_features_and_survive_a_checkpoint():
    words, tags = [["play", "jazz"], ["play", "rock"]], [["O", "B-genre"], ["O", "B-genre"]]
    tables = WordTables(SlotLexicon.build(words, tags), WordVocab.build(words))
    assert (tables.num_words, tables.num_lexicon) == (3, tables.lexicon.num_features) \
        and tables.num_lexicon > 0
    pieces = tables.encode(_LetterTokenizer(), [["play", "jazz"]])[0]
    assert pieces.word_ids == [2, UNK] and pieces.lexicon == tables.lexicon.features(["play", "jazz"])
    assert pieces.lexicon[1]  # jazz matches a genre value
    given = [[[], [7]]]  # the training split's cross-fitted features win over the lexicon's own
    assert tables.encode(_LetterTokenizer(), [["play", "jazz"]], lexicon_features=given)[0].lexicon \
        == [[], [7]]
    restored = WordTables.from_state_dict({"model": {}, **tables.state_dict()})
    assert restored.vocab.words == ["play"] and restored.num_lexicon == tables.num_lexicon
    assert restored.encode(_LetterTokenizer(), [["play", "jazz"]])[0] == pieces
    empty = WordTables.from_state_dict({"model": {}})  # a checkpoint from before either table
    assert (empty.num_words, empty.num_lexicon) == (0, 0)
    assert empty.encode(_LetterTokenizer(), [["play"]])[0].word_ids is None


def _encoder(vocab_size, extra_input_size=0):
    return RNNEncoder(vocab_size, cell="gru", embedding_dim=8, hidden_size=8, num_layers=1,
                      bidirectional=True, dropout=0.0, residual=False, implementation="torch",
                      word_dropout=0.0, extra_input_size=extra_input_size)


def _batch():
    pieces = [WordPieces([5, 6, 7], [0, 1, 2], [b"a", b"b", b"c"], word_ids=[2, 3, UNK]),
              WordPieces([5], [0], [b"a"], word_ids=[4])]
    return make_labelled_batch(pieces, None, None, [0, 1])


def test_the_tagger_reads_a_vector_per_word():
    batch = _batch()
    torch.manual_seed(0)
    tagger = SequenceTagger(10, 3, _encoder, num_labels=0, num_lexicon=0, num_words=6,
                            joint=False, pooling="attention", hidden_size=256, dropout=0.3,
                            word_state="span", byte_features=0, crf=False, word_dropout=0.0,
                            lexicon_features=0, word_embeddings=4)
    args = (batch.src, batch.src_len, batch.word_starts, batch.word_ends, batch.word_bytes, None)
    out = tagger(*args, batch.word_ids)
    assert out.tag_logits.shape == (2, 3, 3)
    out.tag_logits.sum().backward()
    grad = tagger.words.weight.grad  # the rows of the words in the batch, never padding's
    assert grad[[1, 2, 3, 4]].abs().sum(1).gt(0).all() and grad[[0, 5]].abs().sum() == 0
    other = tagger(*args, torch.full_like(batch.word_ids, UNK)).tag_logits
    assert not torch.allclose(other, out.tag_logits)  # the word vectors change the scores
    with pytest.raises(ValueError, match="word_ids"):
        tagger(*args)


def test_word_dropout_drops_the_word_vector_with_the_pieces():
    batch = _batch()
    torch.manual_seed(0)
    tagger = SequenceTagger(10, 3, _encoder, num_labels=0, num_lexicon=0, num_words=6,
                            joint=False, pooling="attention", hidden_size=256, dropout=0.3,
                            word_state="span", byte_features=0, crf=False, word_dropout=1.0,
                            lexicon_features=0, word_embeddings=4)
    tagger.train()
    args = (batch.src, batch.src_len, batch.word_starts, batch.word_ends, batch.word_bytes, None)
    unknown = batch.word_ids.masked_fill(batch.word_ids != PAD, UNK)
    torch.manual_seed(1)
    dropped = tagger(*args, batch.word_ids).tag_logits
    torch.manual_seed(1)
    assert torch.equal(dropped, tagger(*args, unknown).tag_logits)
