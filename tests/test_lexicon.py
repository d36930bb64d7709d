"""The slot lexicon (seq2seq/data/lexicon.py): spans, features, cross-fitting, and its path
through batches and the tagger."""

from __future__ import annotations

import torch

from seq2seq.data.labelled import WordPieces, make_labelled_batch
from seq2seq.data.lexicon import SlotLexicon, bio_spans, cross_fitted_features
from seq2seq.models.encoder import RNNEncoder
from seq2seq.models.labelling import SequenceTagger

WORDS = [["play", "the", "refugee", "playlist"], ["weather", "in", "New", "York"],
         ["play", "miles", "davis"]]
TAGS = [["O", "B-playlist", "I-playlist", "I-playlist"], ["O", "O", "B-city", "I-city"],
        ["O", "B-artist", "I-artist"]]


def test_bio_spans_read_like_conlleval():
    assert bio_spans(["O", "B-a", "I-a", "B-a", "I-b", "O", "I-c"]) == [
        ("a", 1, 2), ("a", 3, 3), ("b", 4, 4), ("c", 6, 6)]  # a stray I- starts a slot


def test_features_mark_first_and_inside_words_of_every_match():
    lexicon = SlotLexicon.build(WORDS, TAGS)
    assert lexicon.types == ["artist", "city", "playlist"] and lexicon.num_features == 6
    city_b, city_i = 2 * 1 + 1, 2 * 1 + 2
    # Lowercased matching, anywhere in the utterance; unmatched words get no feature.
    assert lexicon.features(["rain", "in", "new", "york", "now"]) == [[], [], [city_b], [city_i], []]
    both = SlotLexicon(["x", "y"], {("a",): {"x", "y"}, ("a", "b"): {"y"}})
    assert both.features(["a", "b"]) == [[1, 3], [4]]  # B-x, B-y on "a"; I-y on "b"


def test_entries_longer_than_max_words_are_left_out():
    lexicon = SlotLexicon.build(WORDS, TAGS, max_words=2)
    assert ("the", "refugee", "playlist") not in lexicon.entries
    assert lexicon.features(["the", "refugee", "playlist"]) == [[], [], []]


def test_state_dict_round_trip_is_plain_lists():
    lexicon = SlotLexicon.build(WORDS, TAGS)
    state = lexicon.state_dict()
    assert all(isinstance(k, list) and isinstance(v, list) for k, v in state["entries"])
    again = SlotLexicon.from_state_dict(state)
    assert again.entries == lexicon.entries and again.types == lexicon.types
    assert again.features(WORDS[0]) == lexicon.features(WORDS[0])


def test_cross_fitting_hides_an_utterances_own_slots():
    words = [["play", "jazz"]] * 2 + [["play", "rare", "tune"]]
    tags = [["O", "B-genre"]] * 2 + [["O", "B-track", "I-track"]]
    features = cross_fitted_features(words, tags, ["genre", "track"], folds=3, seed=0)
    # "rare tune" occurs once: whichever fold holds it, the other folds never saw it.
    assert features[2] == [[], [], []]
    full = SlotLexicon.build(words, tags, ["genre", "track"])
    assert full.features(words[2]) == [[], [3], [4]]


def test_batches_carry_padded_feature_ids_and_the_tagger_uses_them():
    pieces = [WordPieces([5, 6, 7], [0, 1, 2], [b"a", b"b", b"c"], [[], [1, 3], [2]]),
              WordPieces([5], [0], [b"a"], [[4]])]
    batch = make_labelled_batch(pieces, None, None, [0, 1])
    assert batch.word_lexicon.tolist() == [[[0, 0], [1, 3], [2, 0]], [[4, 0], [0, 0], [0, 0]]]
    assert make_labelled_batch([p._replace(lexicon=None) for p in pieces], None, None,
                               [0, 1]).word_lexicon is None

    def encoder(vocab_size, extra_input_size=0):
        return RNNEncoder(vocab_size, cell="gru", embedding_dim=8, hidden_size=8, num_layers=1,
                          bidirectional=True, dropout=0.0, residual=False,
                          implementation="torch", word_dropout=0.0,
                          extra_input_size=extra_input_size)

    torch.manual_seed(0)
    tagger = SequenceTagger(10, 3, encoder, num_labels=0, num_lexicon=6, num_words=0,
                            joint=False, pooling="attention", hidden_size=256, dropout=0.3,
                            word_state="span", byte_features=0, crf=False, word_dropout=0.0,
                            lexicon_features=4, word_embeddings=0)
    args = (batch.src, batch.src_len, batch.word_starts, batch.word_ends, batch.word_bytes)
    out = tagger(*args, batch.word_lexicon)
    assert out.tag_logits.shape == (2, 3, 3)
    out.tag_logits.sum().backward()
    grad = tagger.lexicon.weight.grad
    assert grad[[1, 2, 3, 4]].abs().sum(1).gt(0).all() and grad[[0, 5, 6]].abs().sum() == 0
    other = tagger(*args, torch.zeros_like(batch.word_lexicon)).tag_logits
    assert not torch.allclose(other, out.tag_logits)  # the matches change the scores
    try:
        tagger(*args)
    except ValueError as err:
        assert "word_lexicon" in str(err)
    else:
        raise AssertionError("a lexicon tagger without word_lexicon must fail")
