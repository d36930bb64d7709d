"""Sampling (seq2seq/search.py:sampler): what temperature, top-k, top-p and the seed do, on
hand-made distributions and on a tiny random model."""

import math
from collections import Counter

import pytest
import torch

from seq2seq.errors import ConfigError
from seq2seq.sampling import nucleus_mask, sampler
from seq2seq.search import decode, decode_nbest, greedy_search
from tests.test_models import tiny_model
from tests.test_search import TRAP, MarkovStepper, Rows

SRC = torch.tensor([[4, 5, 6, 7, 3], [8, 9, 3, 0, 0], [10, 3, 0, 0, 0]])
SRC_LEN = torch.tensor([5, 3, 2])
# one step's distribution over 6 tokens, rows repeated to draw many samples at once
PROBS = torch.tensor([0.5, 0.3, 0.12, 0.05, 0.02, 0.01])


def draws(choose, rows: int = 4000) -> Counter:
    """How often each token is drawn from PROBS in ``rows`` draws."""
    _, ids = choose(PROBS.log().expand(rows, -1))
    return Counter(ids.tolist())


def entropy(counts: Counter) -> float:
    total = sum(counts.values())
    return -sum(n / total * math.log(n / total) for n in counts.values())


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_a_tiny_temperature_is_greedy_on_hand_made_scores():
    for seed in range(5):
        sampled = greedy_search(MarkovStepper(TRAP), Rows(2), 2, torch.tensor([4, 3]),
                                choose=sampler(1e-4, generator=seeded(seed)))
        greedy = greedy_search(MarkovStepper(TRAP), Rows(2), 2, torch.tensor([4, 3]))
        assert [h.tokens for h in sampled] == [h.tokens for h in greedy]


@pytest.mark.parametrize("choose", [lambda g: sampler(1e-4, generator=g),
                                    lambda g: sampler(1.0, top_k=1, generator=g),
                                    lambda g: sampler(2.0, top_k=1, generator=g)],
                         ids=["temperature-1e-4", "top-k-1", "top-k-1-hot"])
def test_greedy_limits_of_sampling_equal_greedy_search_on_a_model(choose):
    model = tiny_model()
    greedy = decode(model, SRC, SRC_LEN, beam=1, max_length=12)
    for seed in range(3):
        sampled = decode(model, SRC, SRC_LEN, max_length=12, choose=choose(seeded(seed)))
        assert [h.tokens for h in sampled] == [h.tokens for h in greedy]
        # the scores are the model's log-probabilities, not the tempered ones
        assert [h.score for h in sampled] == pytest.approx([h.score for h in greedy], abs=1e-5)


def test_a_high_temperature_spreads_the_choices():
    cold, normal, hot = (entropy(draws(sampler(t, generator=seeded(0)))) for t in (0.3, 1.0, 3.0))
    assert cold < normal < hot
    assert hot > 0.9 * math.log(len(PROBS))  # close to uniform
    # the empirical distribution at T=1 is the model's
    counts = draws(sampler(1.0, generator=seeded(1)), rows=20000)
    assert counts[0] / 20000 == pytest.approx(0.5, abs=0.02)


def test_a_high_temperature_gives_more_distinct_first_tokens_on_a_model():
    model = tiny_model()
    first = {}
    for temperature in (0.2, 1.0, 5.0):
        lists = decode_nbest(model, SRC[:1, :5], SRC_LEN[:1], nbest=300, max_length=3,
                             choose=sampler(temperature, generator=seeded(0)))
        first[temperature] = entropy(Counter(h.tokens[0] if h.tokens else -1 for h in lists[0]))
    assert first[0.2] < first[1.0] < first[5.0]


def test_top_p_draws_only_from_the_nucleus():
    # 0.5 + 0.3 >= 0.75: the nucleus is the two most likely tokens
    counts = draws(sampler(1.0, top_p=0.75, generator=seeded(0)))
    assert set(counts) == {0, 1}
    assert counts[0] / 4000 == pytest.approx(0.5 / 0.8, abs=0.03)  # renormalized within it
    assert set(draws(sampler(1.0, top_p=0.85, generator=seeded(0)))) == {0, 1, 2}
    assert set(draws(sampler(1.0, top_p=1e-3, generator=seeded(0)))) == {0}


def test_nucleus_mask_keeps_the_smallest_set_reaching_p_in_any_order():
    log_probs = torch.tensor([[0.05, 0.5, 0.15, 0.3], [0.25, 0.25, 0.25, 0.25]]).log()
    outside = nucleus_mask(log_probs, 0.6)
    assert outside.tolist() == [[True, False, True, False], [False, False, False, True]]


def test_top_k_draws_only_from_the_k_most_likely():
    assert set(draws(sampler(1.0, top_k=3, generator=seeded(0)))) == {0, 1, 2}


def test_the_same_seed_gives_the_same_samples_and_another_seed_others():
    model = tiny_model()

    def run(seed: int) -> list:
        lists = decode_nbest(model, SRC, SRC_LEN, nbest=4, max_length=12,
                             choose=sampler(1.5, generator=seeded(seed)))
        return [[h.tokens for h in hyps] for hyps in lists]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_n_samples_each_are_sorted_by_score():
    lists = decode_nbest(tiny_model(), SRC, SRC_LEN, nbest=5, max_length=12,
                         choose=sampler(1.0, generator=seeded(0)))
    assert [len(hyps) for hyps in lists] == [5, 5, 5]
    for hyps in lists:
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("kwargs,match", [({"temperature": 0.0}, "temperature=0.0"),
                                          ({"top_k": -1}, "top_k=-1"),
                                          ({"top_p": 0.0}, "top_p=0.0"),
                                          ({"top_p": 1.5}, "top_p=1.5")])
def test_bad_sampling_options_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        sampler(**kwargs)
