"""The generate report: perplexity of the test utterances given their classes, distinct-1/2 of
sampled utterances, and intent fidelity as judged by a classifier."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from seq2seq.evaluation.labels import distinct_n
from seq2seq.topologies.base import Predictor
from seq2seq.topologies.generate.batches import GenerationBatches
from seq2seq.topologies.generate.objective import perplexity
from seq2seq.topologies.generate.predictor import Generator


def generation_report(generator: Generator, classes: Sequence[str], utterances: Sequence[str],
                      test_set: str, judge: Optional[Predictor] = None,
                      judge_checkpoint: Optional[str] = None, samples: int = 10,
                      seed: int = 0) -> dict[str, Any]:
    """Perplexity of the test utterances given their classes; one sample per test line for
    distinct-1/2 and (with a ``judge``, a classifier's predictor) intent fidelity."""
    ids = generator.labels.encode(classes, test_set)
    pieces = generator.tokenizer.encode(list(utterances))
    loss, ppl = perplexity(generator.model, GenerationBatches(ids, pieces, 10**9, 0))
    generated = generator.generate(classes, seed=seed)
    report: dict[str, Any] = {
        "topology": "generate", "test_set": test_set, "num_examples": len(classes),
        "perplexity": round(ppl, 3), "loss_per_piece": round(loss, 4),
        "temperature": generator.temperature, "top_k": generator.top_k,
        "distinct_1": distinct_n(generated, 1), "distinct_2": distinct_n(generated, 2),
        "intent_fidelity": None, "judge_checkpoint": judge_checkpoint}
    judged = None
    if judge is not None:
        judged = [p.split("\t")[0] for p in judge.predict(generated)]
        agree = sum(j == c for j, c in zip(judged, classes, strict=True))
        report["intent_fidelity"] = round(100 * agree / max(len(classes), 1), 2)
    report["samples"] = [
        {"class": c, "generated": g, **({"judge": judged[i]} if judged else {})}
        for i, (c, g) in enumerate(zip(classes, generated, strict=True))
        if i % max(1, len(classes) // samples) == 0
    ][:samples]
    return report
