"""Corpus BLEU, chrF and TER with sacrebleu, on detokenized text, with their signatures and
95% confidence intervals from bootstrap resampling (sacrebleu's ``n_bootstrap``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Sequence

from sacrebleu.metrics import BLEU, CHRF, TER

from seq2seq.errors import DataError


@dataclass(frozen=True)
class MetricScore:
    name: str
    score: float
    signature: str
    ci: Optional[float] = None    # half-width of the 95% bootstrap interval: mean ± ci
    mean: Optional[float] = None  # mean over the bootstrap resamples

    @property
    def interval(self) -> Optional[tuple[float, float]]:
        if self.ci is None or self.mean is None:
            return None
        return (round(self.mean - self.ci, 2), round(self.mean + self.ci, 2))


@dataclass(frozen=True)
class Scores:
    bleu: float
    chrf: float
    ter: float
    bleu_signature: str
    chrf_signature: str
    ter_signature: str
    bleu_detail: str          # sacrebleu's one-line summary: n-gram precisions, BP, lengths
    bleu_lc: float            # lowercased BLEU, 13a tokenizer (for published RNN numbers)
    bleu_lc_signature: str
    num_sentences: int
    bleu_ci: Optional[tuple[float, float]] = None   # 95% bootstrap intervals
    chrf_ci: Optional[tuple[float, float]] = None
    ter_ci: Optional[tuple[float, float]] = None

    def as_dict(self) -> dict:
        return asdict(self)


def metrics() -> dict[str, object]:
    """The metrics every report shows, by the name sacrebleu prints."""
    return {"BLEU": BLEU(), "chrF2": CHRF(), "TER": TER()}


def _score(metric, hyps: list[str], refs: list[list[str]], n_bootstrap: int) -> MetricScore:
    result = metric.corpus_score(hyps, refs, n_bootstrap=n_bootstrap or 1)
    ci = getattr(result, "_ci", None) if n_bootstrap > 1 else None
    mean = getattr(result, "_mean", None) if n_bootstrap > 1 else None
    return MetricScore(result.name, round(result.score, 2), str(metric.get_signature()),
                       None if ci is None else float(ci), None if mean is None else float(mean))


def check_aligned(hypotheses: Sequence[str], references: Sequence[str], what: str = "hypotheses"
                  ) -> None:
    if len(hypotheses) != len(references):
        raise DataError(f"{len(hypotheses)} {what} but {len(references)} references; "
                        f"expected one line of {what} per reference line")


def score_corpus(hypotheses: Sequence[str], references: Sequence[str],
                 n_bootstrap: int = 0) -> Scores:
    """Score detokenized hypotheses against one reference each (same order, same count).
    With ``n_bootstrap`` > 1, also 95% confidence intervals from that many resamples."""
    check_aligned(hypotheses, references)
    hyps, refs = list(hypotheses), [list(references)]
    bleu = BLEU()
    bleu_result = bleu.corpus_score(hyps, refs)
    scored = {name: _score(metric, hyps, refs, n_bootstrap) for name, metric in metrics().items()}
    lowercased = _score(BLEU(lowercase=True), hyps, refs, 0)
    return Scores(
        bleu=scored["BLEU"].score, chrf=scored["chrF2"].score, ter=scored["TER"].score,
        bleu_signature=scored["BLEU"].signature, chrf_signature=scored["chrF2"].signature,
        ter_signature=scored["TER"].signature, bleu_detail=str(bleu_result),
        bleu_lc=lowercased.score, bleu_lc_signature=lowercased.signature, num_sentences=len(hyps),
        bleu_ci=scored["BLEU"].interval, chrf_ci=scored["chrF2"].interval,
        ter_ci=scored["TER"].interval,
    )


def sentence_chrf(hypotheses: Sequence[str], references: Sequence[str]) -> list[float]:
    """chrF of each sentence on its own (to find the best and worst translations)."""
    chrf = CHRF()
    return [chrf.sentence_score(h, [r]).score for h, r in zip(hypotheses, references)]
