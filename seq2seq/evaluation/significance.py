"""Is system B really better than A? Paired bootstrap resampling (Koehn, 2004) from sacrebleu."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

from sacrebleu.metrics.base import Metric
from sacrebleu.significance import PairedTest, Result

from seq2seq.evaluation.bleu import DEFAULT_TOKENIZER, check_aligned, metrics


@dataclass(frozen=True)
class PairedResult:
    metric: str
    system: float
    baseline: float
    p_value: float
    system_ci: tuple[float, float]  # 95% bootstrap interval of the system's score

    @property
    def significant(self) -> bool:
        return self.p_value < 0.05


def paired_bootstrap(system: Sequence[str], baseline: Sequence[str], references: Sequence[str],
                     n_samples: int = 1000, tokenize: str = DEFAULT_TOKENIZER
                     ) -> list[PairedResult]:
    """Compare ``system`` with ``baseline`` on BLEU (sacrebleu's tokenizer ``tokenize``), chrF and
    TER over the same references.

    sacrebleu seeds its resampling (SACREBLEU_SEED, default 12345), so results are repeatable.
    When the two outputs are identical line for line the difference is exactly 0 and p = 1:
    sacrebleu returns its smallest p-value for a system tested against itself, by design
    ("a zero difference should not be attributed to chance"), which would read as significant.
    """
    check_aligned(system, references, "system lines")
    check_aligned(baseline, references, "baseline lines")
    test = PairedTest([("baseline", list(baseline)), ("system", list(system))],
                      cast(Mapping[str, Metric], metrics(tokenize)),
                      [list(references)], test_type="bs", n_samples=n_samples)
    _, results = test()
    identical = list(system) == list(baseline)
    out = []
    for name in metrics(tokenize):
        # Row 0 of each metric is the baseline's, row 1 the system's: Results, not names; the
        # paired bootstrap fills in the system's p_value, mean and ci.
        base, sys = cast(Result, results[name][0]), cast(Result, results[name][1])
        mean, ci, p_value = cast(float, sys.mean), cast(float, sys.ci), cast(float, sys.p_value)
        out.append(PairedResult(
            name, round(sys.score, 2), round(base.score, 2),
            1.0 if identical else float(p_value),
            (round(float(mean - ci), 2), round(float(mean + ci), 2))))
    return out
