"""n-best lists: the Moses format, the Translator's n-best and sampled lists, the oracle."""

from __future__ import annotations

import pytest
import torch

from seq2seq.errors import ConfigError, DataError
from seq2seq.nbest import NbestRecorder, nbest_line, oracle, parse_nbest_line
from seq2seq.tokenization import build_tokenizers
from seq2seq.translate import SearchSettings, Translation, Translator, build_translation_model
from tests.conftest import compose_train, group_settings

LINES = ["twenty-one cats", "", "three dogs and five birds", "   ", "one hundred"]
SMALL = ["model.encoder.embedding_dim=8", "model.encoder.hidden_size=6",
         "model.decoder.embedding_dim=8", "model.decoder.hidden_size=7"]
BEAM = dict(beam=4, length_penalty=1.0, max_length_ratio=2.0, max_length=12, batch_size=2,
            precision="fp32")


@pytest.fixture(scope="module")
def parts(tiny_corpus, cache_dir):
    """A random tiny model and SentencePiece models of the tiny corpus (nothing trained)."""
    tokenizers = build_tokenizers([tiny_corpus / "train.en"], [tiny_corpus / "train.de"],
                                  group_settings("tokenizer", "unigram", vocab_size=60,
                                                 joint=True), cache_dir)
    torch.manual_seed(0)
    model = build_translation_model(compose_train(SMALL).model, tokenizers.src.vocab_size,
                                    tokenizers.tgt.vocab_size)
    return model.eval(), tokenizers


def translator(parts, **search) -> Translator:
    return Translator(*parts, SearchSettings(**{**BEAM, **search}))


def test_a_line_reads_back():
    line = nbest_line(12, "drei Katzen\nund ein Hund", -1.2345678)
    assert line == "12 ||| drei Katzen und ein Hund ||| -1.234568\n"
    assert parse_nbest_line(line) == (12, "drei Katzen und ein Hund", pytest.approx(-1.234568))
    assert parse_nbest_line(nbest_line(0, "a ||| b", 0.0)).text == "a ||| b"
    assert parse_nbest_line(nbest_line(3, "", 0.0)) == (3, "", 0.0)
    with pytest.raises(DataError, match="nbest.txt:2"):
        parse_nbest_line("drei Katzen", "nbest.txt:2")


def test_nbest_lists_are_sorted_and_led_by_the_one_best(parts):
    beam = translator(parts)
    best = beam.translate_detailed(LINES)
    lists = beam.translate_detailed(LINES, nbest=3)
    assert len(lists) == len(LINES)
    for i, (one, hyps) in enumerate(zip(best, lists)):
        assert len(hyps) == 3
        assert [t.score for t in hyps] == sorted((t.score for t in hyps), reverse=True)
        assert hyps[0].text == one.text and hyps[0].score == pytest.approx(one.score)
        if not LINES[i].strip():  # an empty line: N empty hypotheses
            assert [(t.text, t.score) for t in hyps] == [("", 0.0)] * 3
    # nbest=1: the default output, as one-element lists
    assert [[t.text] for t in best] == [[t.text for t in hyps]
                                         for hyps in beam.translate_detailed(LINES, nbest=1)]
    assert [t.text for t in best] == beam.translate(LINES)


def test_nbest_above_the_beam_is_refused(parts):
    with pytest.raises(ConfigError, match="nbest=5 is more than the beam width \\(4\\)"):
        translator(parts).translate_detailed(LINES, nbest=5)
    with pytest.raises(ConfigError, match="nbest=3 is more than the beam width \\(2\\)"):
        translator(parts).translate_detailed(LINES, beam=2, nbest=3)


def test_sampled_lists_hold_n_samples_and_a_seed_reproduces_them(parts):
    def sample(found: Translator) -> list[list[tuple[str, float]]]:
        return [[(t.text, t.score) for t in hyps]
                for hyps in found.translate_detailed(LINES, nbest=6)]  # more than the beam

    def seeded(seed: int) -> Translator:
        return translator(parts, sampling=True, temperature=1.5, top_p=0.9, seed=seed)

    first = sample(seeded(3))
    assert [len(hyps) for hyps in first] == [6] * len(LINES)
    assert len({text for text, _ in first[0]}) > 1  # samples differ
    assert first == sample(seeded(3))
    assert first != sample(seeded(4))
    # one stream over the calls: a second call draws new samples, as the next chunk would
    again = seeded(3)
    assert sample(again) == first and sample(again) != first


def test_a_tiny_temperature_samples_the_greedy_output(parts):
    greedy = translator(parts, beam=1).translate(LINES)
    assert translator(parts, sampling=True, temperature=1e-4, seed=0).translate(LINES) == greedy


@pytest.mark.parametrize("override,match", [
    ({"temperature": 0.0}, "search.temperature=0.0"),
    ({"top_p": 0.0}, "search.top_p=0.0"),
    ({"top_k": -2}, "search.top_k=-2"),
    ({"seed": "x"}, "search.seed='x'"),
    ({"sampling": "yes"}, "search.sampling='yes'"),
])
def test_bad_search_settings_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        SearchSettings(**{**BEAM, **override})


def test_the_sampling_option_of_the_search_group():
    sampling = group_settings("search", "sampling")
    assert sampling.sampling and sampling.seed is None and sampling.top_p == 1.0
    assert not group_settings("search", "beam").sampling
    assert group_settings("search", "sampling", seed=5, top_k=10).top_k == 10


def test_the_oracle_picks_the_best_of_each_list_by_sentence_chrf():
    def as_list(*texts: str) -> list[Translation]:
        return [Translation(text, [], [], -float(i), None) for i, text in enumerate(texts)]

    lists = [as_list("a cat sat", "the cat sat on the mat"), as_list("hello"), []]
    assert oracle(lists, ["the cat sat on the mat", "hello", "x"]) == \
        ["the cat sat on the mat", "hello", ""]


def test_the_recorder_returns_the_one_best_and_keeps_the_lists(parts):
    beam = translator(parts)
    recorder = NbestRecorder(beam, 2)
    assert recorder.translate(LINES[:2]) + recorder.translate(LINES[2:], line_offset=2) == \
        beam.translate(LINES)
    assert [len(hyps) for hyps in recorder.lists] == [2] * len(LINES)
    assert recorder.search is beam.search  # other attributes are the translator's


@pytest.mark.parametrize("stored, asked, temperature", [
    (True, None, 0.5),    # a checkpoint trained with search=sampling: its --temperature counts
    (False, None, None),  # a beam checkpoint: sampling options are not passed on
    (False, True, 0.5),   # --sampling on a beam checkpoint
    (True, False, None),  # --no-sampling on a sampling checkpoint
])
def test_sampling_options_reach_a_checkpoint_that_samples(monkeypatch, stored, asked, temperature):
    from seq2seq.topologies.base import PredictOptions
    from seq2seq.topologies.translate import Translate

    seen = {}
    monkeypatch.setattr(Translator, "from_checkpoints",
                        classmethod(lambda cls, paths, payload, **kw: seen.update(kw)))
    Translate().load_predictor({"config": {"search": {"sampling": stored}}}, ["x.pt"],
                               PredictOptions(sampling=asked, temperature=0.5, top_k=3))
    assert seen["temperature"] == temperature
    assert seen["top_k"] == (None if temperature is None else 3)


def test_the_search_sweep_searches_a_checkpoint_that_samples(parts, monkeypatch):
    from seq2seq.cli.search_sweep import sweep

    sampling = translator(parts, sampling=True, temperature=5.0, seed=1)
    searched = []
    translate = sampling.translate
    monkeypatch.setattr(sampling, "translate", lambda lines: (
        searched.append((sampling.search.beam, sampling.search.sampling)) or translate(lines)))
    sweep(sampling, LINES, LINES, [1, 2], [0.0])
    assert searched == [(1, False), (2, False)]  # each row the beam search it names, no draws
    assert sampling.search.sampling  # the translator's own settings are put back
