import pytest

from seq2seq.errors import DataError
from seq2seq.evaluation.bleu import score_corpus


def test_perfect_and_signature():
    refs = ["ich sehe drei Katzen .", "wir haben einen Hund"]
    scores = score_corpus(refs, refs)
    assert scores.bleu == 100.0 and scores.chrf == 100.0
    assert scores.bleu_signature.startswith("nrefs:1|case:mixed") and "tok:13a" in scores.bleu_signature
    assert "case:lc" in scores.bleu_lc_signature


def test_casing_only_differs_in_lowercased_bleu():
    scores = score_corpus(["ICH SEHE DREI KATZEN"], ["ich sehe drei Katzen"])
    assert scores.bleu < 100.0 and scores.bleu_lc == 100.0


def test_count_mismatch():
    with pytest.raises(DataError, match="2 hypotheses but 1 references"):
        score_corpus(["a", "b"], ["a"])
