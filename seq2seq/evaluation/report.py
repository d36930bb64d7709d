"""Evaluation reports: ``report.json`` (every figure) and ``report.md`` (renders on GitHub)."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Sequence

from seq2seq.evaluation.bleu import Scores


def library_versions() -> dict[str, str]:
    import hydra
    import sacrebleu
    import sentencepiece
    import torch

    import seq2seq
    return {"seq2seq": seq2seq.__version__, "torch": torch.__version__,
            "sacrebleu": sacrebleu.__version__, "sentencepiece": sentencepiece.__version__,
            "hydra": hydra.__version__, "python": platform.python_version()}


def build_report(scores: Scores, test_set: str, sources: Sequence[str], references: Sequence[str],
                 hypotheses: Sequence[str], samples: int = 5, **facts: Any) -> dict[str, Any]:
    """The report as a dict: scores with signatures, run facts, and a few sample translations."""
    report: dict[str, Any] = {**scores.as_dict(), "signature": scores.bleu_signature,
                              "test_set": test_set, **facts}
    report["samples"] = [{"source": s, "reference": r, "hypothesis": h}
                         for s, r, h in list(zip(sources, references, hypotheses))[:samples]]
    report["versions"] = library_versions()
    return report


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def render_markdown(report: dict[str, Any]) -> str:
    lines = ["# Evaluation report", "",
             f"Test set: `{report['test_set']}` ({report['num_sentences']} sentences)", "",
             "| metric | score | signature |", "|---|---:|---|",
             f"| BLEU | {report['bleu']:.2f} | `{report['bleu_signature']}` |",
             f"| chrF | {report['chrf']:.2f} | `{report['chrf_signature']}` |",
             f"| BLEU, lowercased | {report['bleu_lc']:.2f} | `{report['bleu_lc_signature']}` |",
             "", f"BLEU detail: `{report['bleu_detail']}`", "",
             "BLEU and chrF are sacrebleu scores on detokenized text against the raw references.", ""]
    facts = {k: v for k, v in report.items() if k not in _SCORE_KEYS and
             not isinstance(v, (dict, list))}
    if facts:
        lines += ["## Run", "", "| fact | value |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in facts.items()]
        lines.append("")
    if report.get("overrides"):
        lines += ["Config overrides: " + " ".join(f"`{o}`" for o in report["overrides"]), ""]
    if report.get("learning_curve"):
        lines += ["## Learning curve", "", f"![learning curve]({report['learning_curve']})", ""]
    if report.get("samples"):
        lines += ["## Sample translations", ""]
        for i, sample in enumerate(report["samples"], start=1):
            lines += [f"{i}. source: {sample['source']}",
                      f"   reference: {sample['reference']}",
                      f"   hypothesis: {sample['hypothesis']}", ""]
    if report.get("versions"):
        lines += ["## Versions", "", ", ".join(f"{k} {v}" for k, v in report["versions"].items()), ""]
    return "\n".join(lines)


_SCORE_KEYS = {"bleu", "chrf", "bleu_lc", "bleu_signature", "chrf_signature", "bleu_lc_signature",
               "bleu_detail", "signature", "test_set", "num_sentences", "learning_curve"}


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value).replace("|", "\\|")


def write_report(report: dict[str, Any], report_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``report_dir`` (each atomically)."""
    folder = Path(report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / "report.json", folder / "report.md"
    _write_atomic(json_path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    _write_atomic(md_path, render_markdown(report))
    return json_path, md_path
