"""Evaluation reports: ``report.json`` (every figure), ``report.md`` (renders on GitHub, images
linked) and optionally a self-contained ``report.html``.

Sections: scores with signatures and 95% bootstrap intervals; a paired bootstrap test against a
baseline; BLEU by source length (table and chart); attention heatmaps; best and worst sentences
by chrF; run facts; library versions.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any, Optional, Sequence

import hydra
import sacrebleu
import sentencepiece
import torch

import seq2seq
from seq2seq.data.corpus import write_text_atomic
from seq2seq.evaluation.analysis import best_and_worst, bleu_by_length
from seq2seq.evaluation.bleu import DEFAULT_TOKENIZER, score_corpus
from seq2seq.evaluation.plots import plot_attention, plot_length_buckets
from seq2seq.evaluation.render import Section, render_html, render_markdown
from seq2seq.evaluation.significance import paired_bootstrap


def library_versions() -> dict[str, str]:
    return {"seq2seq": seq2seq.__version__, "torch": torch.__version__,
            "sacrebleu": sacrebleu.__version__, "sentencepiece": sentencepiece.__version__,
            "hydra": hydra.__version__, "python": platform.python_version()}


def line_count(path: str | Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for _ in handle)


def evaluation_report(sources: Sequence[str], references: Sequence[str],
                      hypotheses: Sequence[str], report_dir: str | Path, test_set: str, *,
                      baseline: Optional[Sequence[str]] = None, baseline_name: str = "baseline",
                      attention: Sequence = (), n_bootstrap: int = 1000, samples: int = 5,
                      html: bool = False, tokenize: str = DEFAULT_TOKENIZER,
                      **facts: Any) -> dict[str, Any]:
    """Score ``hypotheses``, analyse them, and write the report files into ``report_dir``.

    BLEU, here and in the length buckets and the baseline test, uses sacrebleu's tokenizer
    ``tokenize`` (a name ``bleu.bleu_tokenizer`` returned; ``bleu_tokenize`` in the report).
    ``sources`` may be empty strings when only outputs are scored (then lengths are those of the
    references). ``attention`` holds ``Translation`` values with attention weights to plot.
    Extra keyword arguments are run facts, shown as they are.
    """
    folder = Path(report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    scores = score_corpus(hypotheses, references, n_bootstrap, tokenize)
    report: dict[str, Any] = {**scores.as_dict(), "signature": scores.bleu_signature,
                              "test_set": test_set, "bootstrap_resamples": n_bootstrap, **facts}
    have_sources = any(s.strip() for s in sources)
    lengths_of = sources if have_sources else references
    report["length_by"] = "source" if have_sources else "reference"
    report["bleu_by_length"] = bleu_by_length(lengths_of, hypotheses, references,
                                              tokenize=tokenize)
    report["bleu_by_length_png"] = plot_length_buckets(
        report["bleu_by_length"], folder / "bleu_by_length.png").name
    report["samples"] = best_and_worst(sources, hypotheses, references, samples)
    if baseline is not None:
        report["baseline"] = {"name": baseline_name, "results": [
            {**r.__dict__, "significant": r.significant}
            for r in paired_bootstrap(hypotheses, baseline, references, n_bootstrap or 1000,
                                      tokenize)]}
    report["attention_plots"] = []
    for i, example in enumerate(t for t in attention if t.attention is not None):
        png = plot_attention(example.src_pieces + ["</s>"], example.hyp_pieces + ["</s>"],
                             example.attention, folder / f"attention_{i + 1}.png")
        report["attention_plots"].append({"png": png.name, "source": " ".join(example.src_pieces),
                                          "hypothesis": example.text})
    report["versions"] = library_versions()
    write_report(report, folder, html)
    return report


def write_report(report: dict[str, Any], report_dir: str | Path, html: bool = False,
                 content: list[Section] | None = None) -> list[Path]:
    """Write ``report.json`` and ``report.md`` (and ``report.html``), each atomically; ``content``
    is the list of sections (default: the translation report's)."""
    folder = Path(report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "report.json", folder / "report.md"]
    write_text_atomic(written[0], json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
    write_text_atomic(written[1], render_markdown(report, content))
    if html:
        written.append(folder / "report.html")
        write_text_atomic(written[2], render_html(report, folder, content))
    return written
