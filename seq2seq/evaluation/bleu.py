"""Corpus BLEU and chrF with sacrebleu, on detokenized text, with their signatures."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from sacrebleu.metrics import BLEU, CHRF

from seq2seq.errors import DataError


@dataclass(frozen=True)
class Scores:
    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    bleu_detail: str          # sacrebleu's one-line summary: n-gram precisions, BP, lengths
    bleu_lc: float            # lowercased BLEU with sacrebleu's 13a tokenizer (for published RNN numbers)
    bleu_lc_signature: str
    num_sentences: int

    def as_dict(self) -> dict:
        return asdict(self)


def score_corpus(hypotheses: Sequence[str], references: Sequence[str]) -> Scores:
    """Score detokenized hypotheses against one reference each (same order, same count)."""
    if len(hypotheses) != len(references):
        raise DataError(f"{len(hypotheses)} hypotheses but {len(references)} references; "
                        "expected one hypothesis per reference line")
    hyps, refs = list(hypotheses), [list(references)]
    bleu, bleu_lc, chrf = BLEU(), BLEU(lowercase=True), CHRF()
    bleu_score = bleu.corpus_score(hyps, refs)
    lc_score = bleu_lc.corpus_score(hyps, refs)
    chrf_score = chrf.corpus_score(hyps, refs)
    return Scores(
        bleu=round(bleu_score.score, 2), chrf=round(chrf_score.score, 2),
        bleu_signature=str(bleu.get_signature()), chrf_signature=str(chrf.get_signature()),
        bleu_detail=str(bleu_score), bleu_lc=round(lc_score.score, 2),
        bleu_lc_signature=str(bleu_lc.get_signature()), num_sentences=len(hyps),
    )
