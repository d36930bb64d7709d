"""Corpus BLEU, chrF and TER with sacrebleu, on detokenized text, with their signatures and
95% confidence intervals from bootstrap resampling (sacrebleu's ``n_bootstrap``).

BLEU counts words, so it needs a tokenizer that finds them: sacrebleu's ``13a`` splits on spaces
and punctuation, which leaves a Chinese or Japanese sentence (written without spaces) one "word".
``bleu_tokenizer`` picks sacrebleu's tokenizer for the target language (``auto``), or checks an
explicit one; the signature of every score names it (``tok:zh``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional, Sequence

from sacrebleu.metrics import BLEU, CHRF, TER

from seq2seq.errors import ConfigError, DataError

DEFAULT_TOKENIZER = "13a"  # sacrebleu's default, WMT's mteval-v13a rules
# ``auto``: the tokenizer sacrebleu provides for a target language written without spaces.
TOKENIZER_FOR_LANGUAGE = {"zh": "zh", "ja": "ja-mecab", "ko": "ko-mecab"}
# The tokenizers that need a pip extra of sacrebleu (MeCab and its dictionary).
TOKENIZER_EXTRAS = {"ja-mecab": "sacrebleu[ja]", "ko-mecab": "sacrebleu[ko]"}
# TER splits on spaces; on these tokenizers' languages it needs sacrebleu's Asian support.
ASIAN_TOKENIZERS = {"zh", "ja-mecab", "ko-mecab"}


def language_code(lang: Optional[str]) -> str:
    """The base language of a code: ``zh-CN``, ``zh_Hans`` and ``ZH`` are all ``zh``."""
    return (lang or "").replace("_", "-").split("-")[0].lower()


def bleu_tokenizer(tokenize: str, tgt_lang: Optional[str], option: str = "evaluation.tokenize"
                   ) -> str:
    """The sacrebleu tokenizer name for ``tokenize``: ``auto`` picks by ``tgt_lang`` (``zh`` for
    Chinese, ``ja-mecab`` for Japanese, ``ko-mecab`` for Korean, ``13a`` otherwise); any name
    sacrebleu knows is kept. ConfigError (naming ``option``) for an unknown name, or for a
    tokenizer whose pip extra is not installed (it says which)."""
    name = TOKENIZER_FOR_LANGUAGE.get(language_code(tgt_lang), DEFAULT_TOKENIZER) \
        if tokenize == "auto" else tokenize
    known = tuple(BLEU.TOKENIZERS)
    if name not in known:
        raise ConfigError(f"{option}={tokenize!r} is not supported; expected auto or one of "
                          f"sacrebleu's tokenizers {list(known)}")
    try:
        BLEU(tokenize=name)  # builds the tokenizer now, so a missing extra fails before any work
    except (RuntimeError, ImportError, OSError) as err:
        extra = TOKENIZER_EXTRAS.get(name)
        how = f"install its extra: pip install '{extra}'" if extra else str(err).strip()
        chosen = f" (chosen for target language {tgt_lang!r})" if tokenize == "auto" else ""
        raise ConfigError(f"{option}={tokenize}: sacrebleu's {name} tokenizer{chosen} cannot be "
                          f"used here; {how}") from None
    return name


def stored_tokenize(config: Any, given: Optional[str]) -> str:
    """``given`` (a tool's ``--tokenize``), else the ``evaluation.tokenize`` of ``config`` (a run's
    config, or a checkpoint's stored one: a mapping), else ``auto`` (for configs that predate
    the option)."""
    evaluation = config.get("evaluation") or {}
    return given or str(evaluation.get("tokenize") or "auto")


def tool_tokenizer(given: Optional[str], tgt_lang: Optional[str],
                   config: Optional[Mapping[str, Any]] = None, option: str = "--tokenize") -> str:
    """The BLEU tokenizer of the evaluate and compare tools: ``given`` (``--tokenize``), else the
    checkpoint's ``evaluation.tokenize`` (``config``: its stored config), else auto; auto picks by
    ``tgt_lang`` (``--tgt-lang``), else by the checkpoint's ``data.tgt_lang``."""
    config = config or {}
    lang = tgt_lang or (config.get("data") or {}).get("tgt_lang")
    return bleu_tokenizer(stored_tokenize(config, given), lang, option)


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
    bleu_lc: float            # lowercased BLEU, same tokenizer (for published RNN numbers)
    bleu_lc_signature: str
    num_sentences: int
    bleu_ci: Optional[tuple[float, float]] = None   # 95% bootstrap intervals
    chrf_ci: Optional[tuple[float, float]] = None
    ter_ci: Optional[tuple[float, float]] = None
    bleu_tokenize: str = DEFAULT_TOKENIZER  # sacrebleu's tokenizer (also in the signatures)

    def as_dict(self) -> dict:
        return asdict(self)


def metrics(tokenize: str = DEFAULT_TOKENIZER) -> dict[str, object]:
    """The metrics every report shows, by the name sacrebleu prints: BLEU with sacrebleu's
    tokenizer ``tokenize`` (a name ``bleu_tokenizer`` returned), TER with sacrebleu's Asian
    support where that tokenizer is for Chinese, Japanese or Korean."""
    return {"BLEU": BLEU(tokenize=tokenize), "chrF2": CHRF(),
            "TER": TER(asian_support=tokenize in ASIAN_TOKENIZERS)}


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
                 n_bootstrap: int = 0, tokenize: str = DEFAULT_TOKENIZER) -> Scores:
    """Score detokenized hypotheses against one reference each (same order, same count), BLEU
    with sacrebleu's tokenizer ``tokenize`` (see ``bleu_tokenizer``). With ``n_bootstrap`` > 1, also 95%
    confidence intervals from that many resamples."""
    check_aligned(hypotheses, references)
    hyps, refs = list(hypotheses), [list(references)]
    bleu = BLEU(tokenize=tokenize)
    bleu_result = bleu.corpus_score(hyps, refs)
    scored = {name: _score(metric, hyps, refs, n_bootstrap)
              for name, metric in metrics(tokenize).items()}
    lowercased = _score(BLEU(lowercase=True, tokenize=tokenize), hyps, refs, 0)
    return Scores(
        bleu=scored["BLEU"].score, chrf=scored["chrF2"].score, ter=scored["TER"].score,
        bleu_signature=scored["BLEU"].signature, chrf_signature=scored["chrF2"].signature,
        ter_signature=scored["TER"].signature, bleu_detail=str(bleu_result),
        bleu_lc=lowercased.score, bleu_lc_signature=lowercased.signature, num_sentences=len(hyps),
        bleu_ci=scored["BLEU"].interval, chrf_ci=scored["chrF2"].interval,
        ter_ci=scored["TER"].interval, bleu_tokenize=tokenize,
    )


def sentence_chrf(hypotheses: Sequence[str], references: Sequence[str]) -> list[float]:
    """chrF of each sentence on its own (to find the best and worst translations)."""
    chrf = CHRF()
    return [chrf.sentence_score(h, [r]).score for h, r in zip(hypotheses, references)]


def add_tokenize_options(parser: Any, default: str) -> None:
    """``--tokenize`` and ``--tgt-lang`` of the tools that score BLEU; ``default`` says where the
    tokenizer comes from when ``--tokenize`` is not given (``tool_tokenizer`` resolves both)."""
    parser.add_argument("--tokenize", default=None,
                        help="sacrebleu's BLEU tokenizer: auto (zh, ja-mecab or ko-mecab for "
                             "Chinese, Japanese or Korean targets, else 13a) or any sacrebleu "
                             f"name; default: {default}")
    parser.add_argument("--tgt-lang", default=None,
                        help="the target language for --tokenize auto; default: the "
                             "checkpoint's (or the run's) data.tgt_lang")
