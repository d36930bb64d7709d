"""The classify and tag reports: scores with their details, a confusion matrix, the first errors,
and the predictions written in the corpus's own formats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seq2seq.data.corpus import write_lines
from seq2seq.data.labelled import LabelledSplit, split_labels
from seq2seq.evaluation.labels import labelling_sections
from seq2seq.evaluation.plots import plot_confusion
from seq2seq.evaluation.report import library_versions, write_report
from seq2seq.topologies.labelling.inference import score_predictions
from seq2seq.topologies.labelling.predictor import Labeller


def labelling_report(labeller: Labeller, test: LabelledSplit, report_dir: Path, topology: str,
                     errors: int = 10, hypothesis_stem: str = "hypotheses") -> dict[str, Any]:
    """Scores on ``test`` with their details, a confusion-matrix PNG, and the first errors.

    Every prediction goes to ``report_dir``, a line per utterance, in the corpus's own formats:
    ``{hypothesis_stem}.label`` (one class) and ``{hypothesis_stem}.tags`` (one tag per word),
    whichever the model predicts, so that ``seq2seq-evaluate --hyp`` can score them again."""
    report: dict[str, Any] = {"topology": topology, "test_set": str(test.files["text"]),
                              "num_examples": len(test)}
    predictions = labeller.predictions(test)
    report["joint_decoding"] = labeller.allowed is not None
    if labeller.multi_label:
        report["threshold"] = float(getattr(labeller.model, "threshold", 0.5))
    report.update(score_predictions(predictions, test, labeller.labels, labeller.tags))
    names = labeller.predicted_names(predictions)
    wrong: list[dict[str, Any]] = []
    for i, words in enumerate(test.words):
        row: dict[str, Any] = {"line": i + 1, "utterance": " ".join(words)}
        bad = False
        if "label" in names and test.labels is not None:
            predicted = names["label"][i]
            row.update(gold=test.labels[i], predicted=predicted)
            bad = predicted != test.labels[i]
            if labeller.multi_label:  # a label set: its order does not matter
                bad = set(split_labels([predicted])[0]) != set(split_labels([test.labels[i]])[0])
        if "tags" in names and test.tags is not None and labeller.outputs_tags:
            predicted_tags = names["tags"][i]
            row.update(gold_tags=" ".join(test.tags[i]), predicted_tags=" ".join(predicted_tags))
            bad = bad or predicted_tags != test.tags[i]
        if bad and len(wrong) < errors:
            wrong.append(row)
    report["errors"] = wrong
    report["hypothesis_files"] = write_predictions(names, report_dir, hypothesis_stem)
    if "confusion_matrix" in report:
        add_confusion_png(report, report_dir)
    return report


def add_confusion_png(report: dict[str, Any], report_dir: Path) -> None:
    """Plot the report's confusion matrix into ``report_dir`` and link it from the report."""
    report_dir.mkdir(parents=True, exist_ok=True)
    plot_confusion(report["confusion_matrix"], report["classes"], report_dir / "confusion.png")
    report["confusion_png"] = "confusion.png"


def write_predictions(names: dict[str, list], folder: Path, stem: str) -> dict[str, str]:
    """Write ``Labeller.predicted_names``'s classes and tag sequences, a line per utterance, to
    ``{stem}.label`` and ``{stem}.tags``; returns {"label" | "tags": file name}."""
    if names:
        folder.mkdir(parents=True, exist_ok=True)
    return {kind: write_lines(folder / f"{stem}.{kind}",
                              [row if kind == "label" else " ".join(row) for row in rows]).name
            for kind, rows in names.items()}


def write_labelling_report(report: dict[str, Any], report_dir: Path, html: bool) -> None:
    """report.json, report.md (and report.html) with the classify/tag/generate sections."""
    report.setdefault("versions", library_versions())
    write_report(report, report_dir, html=html, content=labelling_sections(report))


SUMMARY_KEYS = ("accuracy", "micro_f1", "macro_f1", "slot_f1", "perplexity", "distinct_1", "distinct_2",
                "intent_fidelity")


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The figures the evaluate tool prints for a classify, tag or generate report."""
    return [f"{key} = {report[key]:.2f}" for key in SUMMARY_KEYS if report.get(key) is not None]
