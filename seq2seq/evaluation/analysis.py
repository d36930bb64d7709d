"""Where a system is good or bad: BLEU by source length, best and worst sentences."""

from __future__ import annotations

from typing import Sequence

from sacrebleu.metrics import BLEU

from seq2seq.evaluation.bleu import DEFAULT_TOKENIZER, sentence_chrf

LENGTH_EDGES = (10, 20, 30, 40)  # words; the last bucket is open-ended


def length_bucket(words: int, edges: Sequence[int] = LENGTH_EDGES) -> str:
    low = 1
    for edge in edges:
        if words <= edge:
            return f"{low}-{edge}"
        low = edge + 1
    return f"{low}+"


def bleu_by_length(sources: Sequence[str], hypotheses: Sequence[str], references: Sequence[str],
                   edges: Sequence[int] = LENGTH_EDGES, tokenize: str = DEFAULT_TOKENIZER
                   ) -> list[dict]:
    """Corpus BLEU (sacrebleu's tokenizer ``tokenize``) of the sentences in each source-length
    bucket (length in words)."""
    buckets: dict[str, list[int]] = {}
    for i, source in enumerate(sources):
        buckets.setdefault(length_bucket(max(1, len(source.split())), edges), []).append(i)
    order = [length_bucket(e, edges) for e in edges] + [length_bucket(edges[-1] + 1, edges)]
    rows = []
    for name in order:
        ids = buckets.get(name)
        if ids:
            score = BLEU(tokenize=tokenize).corpus_score([hypotheses[i] for i in ids],
                                                         [[references[i] for i in ids]])
            rows.append({"bucket": name, "sentences": len(ids), "bleu": round(score.score, 2)})
    return rows


def best_and_worst(sources: Sequence[str], hypotheses: Sequence[str], references: Sequence[str],
                   count: int = 5) -> dict[str, list[dict]]:
    """The ``count`` best and worst translations by sentence chrF (ties: shorter source first)."""
    scores = sentence_chrf(hypotheses, references)
    ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], len(sources[i]), i))
    row = lambda i: {"line": i + 1, "chrf": round(scores[i], 2), "source": sources[i],  # noqa: E731
                     "reference": references[i], "hypothesis": hypotheses[i]}
    worst = sorted(range(len(scores)), key=lambda i: (scores[i], -len(sources[i]), i))
    return {"best": [row(i) for i in ranked[:count]], "worst": [row(i) for i in worst[:count]]}
