"""Search on hand-made scores (no model), and on a tiny random model."""

import math

import pytest
import torch

from seq2seq.errors import ConfigError
from seq2seq.search import (
    Ensemble,
    EnsembleStepper,
    ModelStepper,
    beam_search,
    beam_search_nbest,
    decode,
    decode_nbest,
    greedy_search,
    length_penalty,
    max_output_lengths,
    top_candidates,
)
from seq2seq.tokenization import BOS, EOS, PAD, UNK
from tests.test_models import tiny_model

A, B_ = 4, 5  # two ordinary tokens; ids 0-3 are pad, unk, bos, eos


class Rows:
    """A search state that is only the previous token of each row."""

    def __init__(self, n: int) -> None:
        self.n = n

    def index_select(self, order: torch.Tensor) -> "Rows":
        return Rows(len(order))


class MarkovStepper:
    """Next-token probabilities depend on the previous token only."""

    def __init__(self, table: dict[int, dict[int, float]], vocab: int = 7) -> None:
        self.table, self.vocab = table, vocab

    def step(self, prev, state):
        probs = torch.full((len(prev), self.vocab), 1e-9)
        for row, token in enumerate(prev.tolist()):
            for nxt, p in self.table.get(token, {EOS: 1.0}).items():
                probs[row, nxt] = p
        return probs.log(), state, None


# Greedy takes A (0.55) and then keeps taking A; the best sequence is B EOS (0.45 * 0.99).
TRAP = {BOS: {A: 0.55, B_: 0.45}, A: {A: 0.4, B_: 0.3, EOS: 0.3}, B_: {EOS: 0.99, A: 0.01}}


def test_greedy_falls_into_the_trap_and_stops_at_max_length():
    hyps = greedy_search(MarkovStepper(TRAP), Rows(1), 1, torch.tensor([4]))
    assert hyps[0].tokens == [A, A, A, A]  # forced to end after 4 tokens


def test_beam_finds_the_better_sequence():
    hyps = beam_search(MarkovStepper(TRAP), Rows(1), 1, torch.tensor([4]), beam=2)
    assert hyps[0].tokens == [B_]
    assert hyps[0].score == pytest.approx(math.log(0.45 * 0.99) / length_penalty(2, 0.0))


def test_beam_one_equals_greedy_on_hand_made_scores():
    greedy = greedy_search(MarkovStepper(TRAP), Rows(3), 3, torch.tensor([4, 2, 6]))
    beam = beam_search(MarkovStepper(TRAP), Rows(3), 3, torch.tensor([4, 2, 6]), beam=1)
    assert [h.tokens for h in beam] == [h.tokens for h in greedy]
    assert [h.score for h in beam] == pytest.approx([h.score for h in greedy])


def test_length_penalty_prefers_longer_when_alpha_grows():
    C = 6
    # "A EOS" has probability 0.4 * 0.5 = 0.2; "B C EOS" has 0.6 * 1.0 * 0.3 = 0.18.
    table = {BOS: {A: 0.4, B_: 0.6}, A: {EOS: 0.5, A: 0.5}, B_: {C: 1.0}, C: {EOS: 0.3, C: 0.7}}
    raw = beam_search(MarkovStepper(table), Rows(1), 1, torch.tensor([5]), beam=3, alpha=0.0)
    assert raw[0].tokens == [A]
    normalized = beam_search(MarkovStepper(table), Rows(1), 1, torch.tensor([5]), beam=3, alpha=1.0)
    assert normalized[0].tokens == [B_, C]
    assert normalized[0].score == pytest.approx(math.log(0.18) / length_penalty(3, 1.0))


def test_top_candidates_policy():
    scores = torch.tensor([[0.0, -1.0]])
    log_probs = torch.log(torch.tensor([[0.1, 0.9], [0.8, 0.2]]))
    cand, beams, tokens = top_candidates(scores, log_probs, 3)
    # -0.11 (beam 0, token 1), -1.22 (beam 1, token 0), -2.30 (beam 0, token 0)
    assert beams.tolist() == [[0, 1, 0]] and tokens.tolist() == [[1, 0, 0]]
    assert cand[0, 0] == pytest.approx(math.log(0.9))


def test_max_output_lengths():
    assert max_output_lengths(torch.tensor([1, 4, 100]), 1.5, 50).tolist() == [2, 6, 50]


@pytest.mark.parametrize("attention", ["none", "bahdanau", "luong"])
@pytest.mark.parametrize("input_feeding", [False, True])
def test_beam_width_one_equals_greedy_on_a_model(attention, input_feeding):
    model = tiny_model(attention=attention, input_feeding=input_feeding)
    src = torch.tensor([[4, 5, 6, 7, 3], [8, 9, 3, 0, 0], [10, 3, 0, 0, 0]])
    src_len = torch.tensor([5, 3, 2])
    stepper = ModelStepper(model)
    limits = max_output_lengths(src_len, 2.0, 20)
    with torch.inference_mode():
        greedy = greedy_search(stepper, stepper.start(src, src_len), 3, limits, True)
        beam = beam_search(stepper, stepper.start(src, src_len), 3, limits, 1, 0.0, True)
    for g, b in zip(greedy, beam):
        assert g.tokens == b.tokens
        assert g.score == pytest.approx(b.score, abs=1e-5)
        if attention != "none":
            torch.testing.assert_close(g.attention, b.attention)


def test_batched_beam_equals_one_sentence_at_a_time():
    model = tiny_model()
    src = torch.tensor([[4, 5, 6, 7, 3], [8, 9, 3, 0, 0]])
    src_len = torch.tensor([5, 3])
    together = decode(model, src, src_len, beam=3, alpha=1.0, max_length=12)
    alone = [decode(model, src[i : i + 1, : int(src_len[i])], src_len[i : i + 1], beam=3,
                    alpha=1.0, max_length=12)[0] for i in range(2)]
    assert [h.tokens for h in together] == [h.tokens for h in alone]
    assert [h.score for h in together] == pytest.approx([h.score for h in alone], abs=1e-5)


def test_attention_rows_match_output_length():
    model = tiny_model()
    hyps = decode(model, torch.tensor([[4, 5, 3]]), torch.tensor([3]), beam=2,
                  return_attention=True)
    assert hyps[0].attention.shape == (len(hyps[0].tokens) + 1, 3)


def test_beam_zero_is_a_config_error():
    with pytest.raises(ConfigError, match="beam=0"):
        decode(tiny_model(), torch.tensor([[4, 3]]), torch.tensor([2]), beam=0)


def test_ensemble_averages_the_members_probabilities():
    first = tiny_model()
    torch.manual_seed(5)
    second = tiny_model(attention="luong")
    src, src_len = torch.tensor([[4, 5, 6, 3], [8, 9, 3, PAD]]), torch.tensor([4, 3])
    stepper = EnsembleStepper(Ensemble([first, second]))
    prev = torch.tensor([2, 2])
    mixed, state, _ = stepper.step(prev, stepper.start(src, src_len))
    singles = [ModelStepper(m).step(prev, ModelStepper(m).start(src, src_len))[0] for m in (first, second)]
    torch.testing.assert_close(mixed.exp(), (singles[0].exp() + singles[1].exp()) / 2)
    assert state.index_select(torch.tensor([1])).members[0].memory.states.size(0) == 1
    # An ensemble of a model with itself decodes exactly as the model alone.
    alone = decode(first, src, src_len, beam=3)
    twice = decode(Ensemble([first, first]), src, src_len, beam=3)
    assert [h.tokens for h in twice] == [h.tokens for h in alone]


@pytest.mark.parametrize("beam", [1, 3])
def test_a_restricted_output_layer_is_searched_over_its_kept_ids(beam):
    """Search runs over the kept ids' positions and maps them back to ids; an ensemble (every
    member scored over all ids, -inf for those left out) decodes the same."""
    model = tiny_model(input_feeding=True)
    model.decoder.restrict_output(torch.tensor([5, 7, 9]))
    src, src_len = torch.tensor([[4, 5, 6, 7, 3], [8, 9, 3, 0, 0]]), torch.tensor([5, 3])
    restricted = decode(model, src, src_len, beam=beam, max_length=12)
    over_all_ids = decode(Ensemble([model, model]), src, src_len, beam=beam, max_length=12)
    assert [h.tokens for h in restricted] == [h.tokens for h in over_all_ids]
    assert [h.score for h in restricted] == pytest.approx([h.score for h in over_all_ids], abs=1e-5)
    emitted = {token for h in restricted for token in h.tokens}
    assert emitted and emitted <= {UNK, 5, 7, 9}


def test_beam_nbest_is_sorted_and_led_by_the_beam_best():
    lists = beam_search_nbest(MarkovStepper(TRAP), Rows(2), 2, torch.tensor([4, 6]), beam=3,
                              nbest=3)
    best = beam_search(MarkovStepper(TRAP), Rows(2), 2, torch.tensor([4, 6]), beam=3)
    for hyps, one in zip(lists, best):
        assert len(hyps) == 3
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        assert hyps[0].tokens == one.tokens and hyps[0].score == one.score
        assert len({tuple(h.tokens) for h in hyps}) == 3  # distinct hypotheses
    # B EOS (0.45 * 0.99 = .446), A EOS (0.55 * 0.3 = .165), A B EOS (0.55 * 0.3 * 0.99 = .163)
    assert [h.tokens for h in lists[0]] == [[B_], [A], [A, B_]]


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_nbest_on_a_model_starts_with_the_one_best(alpha):
    model = tiny_model()
    src, src_len = torch.tensor([[4, 5, 6, 7, 3], [8, 9, 3, 0, 0]]), torch.tensor([5, 3])
    lists = decode_nbest(model, src, src_len, nbest=4, beam=5, alpha=alpha, max_length=12)
    best = decode(model, src, src_len, beam=5, alpha=alpha, max_length=12)
    for hyps, one in zip(lists, best):
        assert 1 <= len(hyps) <= 4
        assert hyps[0].tokens == one.tokens and hyps[0].score == pytest.approx(one.score)
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
    # nbest 1 is the beam's best, greedy's with a beam of one
    assert decode_nbest(model, src, src_len, nbest=1, beam=5, alpha=alpha,
                        max_length=12) == [[h] for h in best]


def test_nbest_above_the_beam_is_a_config_error():
    with pytest.raises(ConfigError, match="nbest=6 is more than the beam width"):
        decode_nbest(tiny_model(), torch.tensor([[4, 3]]), torch.tensor([2]), nbest=6, beam=5)
