"""The CRF output layer and the byte-level word features of the tagger, on tiny tensors."""

from __future__ import annotations

import itertools

import torch

from seq2seq.models.crf import CRF
from seq2seq.models.encoder import RNNEncoder
from seq2seq.models.labelling import ByteWordFeatures, SequenceTagger, piece_words
from seq2seq.models.tag_decoding import viterbi


def random_crf(num_tags: int, seed: int = 0) -> CRF:
    torch.manual_seed(seed)
    crf = CRF(num_tags)
    with torch.no_grad():
        for parameter in crf.parameters():
            parameter.normal_()
    return crf


def brute_force(crf: CRF, emissions: torch.Tensor, length: int) -> dict[tuple, float]:
    """Score of every tag path of one row, by enumeration."""
    scores = {}
    for path in itertools.product(range(emissions.size(-1)), repeat=length):
        score = crf.start[path[0]] + crf.end[path[-1]] + sum(emissions[i, t] for i, t in enumerate(path))
        score = score + sum(crf.transitions[a, b] for a, b in zip(path, path[1:]))
        scores[path] = float(score)
    return scores


def test_partition_gold_score_and_viterbi_match_enumeration_with_padding():
    crf = random_crf(3).requires_grad_(False)
    emissions = torch.randn(2, 4, 3)
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    tags = torch.tensor([[0, 2, 1, 1], [2, 0, -100, -100]])
    log_z = crf.log_partition(emissions, mask)
    gold = crf.gold_score(emissions, tags, mask)
    paths = viterbi(emissions, mask, *crf.decoding_scores())
    for row, length in enumerate([4, 2]):
        scores = brute_force(crf, emissions[row], length)
        expected = torch.logsumexp(torch.tensor(list(scores.values())), 0)
        torch.testing.assert_close(log_z[row], expected, atol=1e-5, rtol=0)
        gold_path = tuple(tags[row, :length].tolist())
        assert abs(float(gold[row]) - scores[gold_path]) < 1e-5
        assert tuple(paths[row]) == max(scores, key=scores.get)
    nll = crf.nll(emissions, tags, mask)
    torch.testing.assert_close(nll, (log_z - gold).sum())
    assert float(nll) > 0


def test_rows_with_tags_unseen_in_training_are_left_out():
    crf = random_crf(3)
    emissions = torch.randn(2, 3, 3)
    mask = torch.ones(2, 3, dtype=torch.bool)
    tags = torch.tensor([[0, 1, 2], [0, -100, 2]])  # row 1: a real word without a known tag
    torch.testing.assert_close(crf.nll(emissions, tags, mask), crf.nll(emissions[:1], tags[:1], mask[:1]))
    assert float(crf.nll(emissions[1:], tags[1:], mask[1:])) == 0.0


def test_crf_learns_which_tag_follows_which():
    # Emissions say nothing; only the transitions can learn that 0 and 1 alternate.
    crf = CRF(2)
    optimizer = torch.optim.Adam(crf.parameters(), lr=0.1)
    emissions = torch.zeros(4, 5, 2)
    tags = torch.tensor([[0, 1, 0, 1, 0]] * 4)
    mask = torch.ones(4, 5, dtype=torch.bool)
    for _ in range(50):
        optimizer.zero_grad()
        crf.nll(emissions, tags, mask).backward()
        optimizer.step()
    assert viterbi(emissions[:1], mask[:1], *crf.decoding_scores()) == [[0, 1, 0, 1, 0]]


def test_hard_constraints_add_to_the_learned_scores():
    crf = CRF(2)
    never_1_after_0 = torch.tensor([[0.0, -float("inf")], [0.0, 0.0]])
    emissions = torch.tensor([[[5.0, 0.0], [0.0, 5.0]]])  # wants 0 then 1
    mask = torch.ones(1, 2, dtype=torch.bool)
    assert viterbi(emissions, mask, *crf.decoding_scores()) == [[0, 1]]
    assert viterbi(emissions, mask, *crf.decoding_scores(torch.zeros(2), never_1_after_0)) != [[0, 1]]


def test_piece_words_maps_each_piece_to_its_word():
    starts = torch.tensor([[0, 2, 3], [0, 0, 0]])  # row 1 has one word (padding words point at 0)
    assert piece_words(starts, 5).tolist() == [[0, 0, 1, 2, 2], [0, 0, 0, 0, 0]]


def test_byte_features_see_the_spelling_and_ignore_padding():
    torch.manual_seed(0)
    features = ByteWordFeatures(filters=6).eval()
    word = torch.tensor([[[ord(c) + 1 for c in "oslo"] + [0, 0]]])
    padded = torch.cat([word, torch.zeros(1, 1, 4, dtype=torch.long)], dim=2)
    torch.testing.assert_close(features(word), features(padded))  # more padding bytes: same
    other = torch.tensor([[[ord(c) + 1 for c in "olso"] + [0, 0]]])
    assert not torch.allclose(features(word), features(other))
    assert features(torch.zeros(1, 2, 5, dtype=torch.long)).abs().sum() == 0  # padding words


def test_tagger_with_byte_features_tells_apart_words_with_the_same_pieces():
    torch.manual_seed(0)
    tagger = SequenceTagger(20, 3, lambda vocab_size, **kw: RNNEncoder(
        vocab_size, cell="gru", embedding_dim=6, hidden_size=4, num_layers=1, bidirectional=True,
        dropout=0.0, residual=False, implementation="torch", word_dropout=0.0, **kw),
        num_labels=0, num_lexicon=0, num_words=0, joint=False, pooling="attention",
        hidden_size=256, dropout=0.3, word_state="span", byte_features=5, crf=True,
        word_dropout=0.0, lexicon_features=0, word_embeddings=0).eval()
    src, lengths = torch.tensor([[4, 5, 3]]), torch.tensor([3])
    starts = torch.tensor([[0, 1]])

    def spelled(a: str, b: str) -> torch.Tensor:
        rows = [[ord(c) + 1 for c in w] + [0] * (4 - len(w)) for w in (a, b)]
        return tagger(src, lengths, starts, starts, torch.tensor([rows])).tag_logits

    assert not torch.allclose(spelled("unk", "oslo"), spelled("unk", "rome"))
    assert tagger.crf is not None


def test_word_dropout_replaces_whole_words_in_training_only():
    from seq2seq.tokenization import EOS, UNK
    seen = []

    class Spy(RNNEncoder):
        def forward(self, src, src_len, extra=None):
            seen.append(src.clone())
            return super().forward(src, src_len, extra)

    torch.manual_seed(0)
    tagger = SequenceTagger(20, 3, lambda vocab_size, **kw: Spy(
        vocab_size, cell="gru", embedding_dim=6, hidden_size=4, num_layers=1, bidirectional=True,
        dropout=0.0, residual=False, implementation="torch", word_dropout=0.0, **kw),
        num_labels=0, num_lexicon=0, num_words=0, joint=False, pooling="attention",
        hidden_size=256, dropout=0.3, word_state="span", byte_features=0, crf=False,
        word_dropout=0.5, lexicon_features=0, word_embeddings=0)
    src = torch.tensor([[5, 6, 7, 8, 9, 10, EOS]] * 64)
    starts = torch.tensor([[0, 2, 3]] * 64)  # words: pieces 0-1, 2, 3-5
    tagger(src, torch.tensor([7] * 64), starts)
    dropped = seen[-1] == UNK
    assert 0.3 < float(dropped[:, :6].float().mean()) < 0.7
    assert torch.equal(dropped[:, 0], dropped[:, 1]) and torch.equal(dropped[:, 3], dropped[:, 5])
    assert not dropped[:, 6].any()  # EOS stays
    tagger.eval()(src, torch.tensor([7] * 64), starts)
    assert torch.equal(seen[-1], src)
