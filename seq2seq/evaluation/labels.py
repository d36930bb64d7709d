"""Scores and report sections for the classify (N vs 1), tag (N vs N) and generate (1 vs N)
topologies: accuracy, macro-F1 and a confusion matrix (multi-label: exact-match accuracy, micro-
and macro-F1 over labels); conlleval span F1 (seqeval); perplexity and distinct-n."""

from __future__ import annotations

from typing import Any, Sequence

from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

from seq2seq.evaluation.render import Image, Section, Table, run_sections


def classification_scores(gold: Sequence[str], predicted: Sequence[str],
                          labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 (the mean of the classes' F1), per-class figures, confusion matrix
    (rows: gold class, columns: predicted class)."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, predicted):
        matrix[index[g]][index[p]] += 1
    per_class = _per_class({label: (matrix[i][i], sum(row[i] for row in matrix), sum(matrix[i]))
                            for i, label in enumerate(labels)})
    correct = sum(matrix[i][i] for i in range(len(labels)))
    return {"accuracy": round(100 * correct / max(len(gold), 1), 2),
            "macro_f1": _macro_f1(per_class),
            "per_class": per_class, "confusion_matrix": matrix, "classes": list(labels)}


def _f1(true_pos: int, predicted: int, support: int) -> tuple[float, float, float]:
    """(precision, recall, F1) from the true positives, predictions and gold occurrences."""
    precision = true_pos / predicted if predicted else 0.0
    recall = true_pos / support if support else 0.0
    return precision, recall, 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _per_class(counts: dict[str, tuple[int, int, int]]) -> dict[str, dict[str, Any]]:
    """Each label's precision, recall and F1 (percent) and support, from its (true positives,
    predictions, gold occurrences)."""
    per_class = {}
    for label, (true_pos, n_predicted, support) in counts.items():
        precision, recall, f1 = _f1(true_pos, n_predicted, support)
        per_class[label] = {"precision": round(100 * precision, 2), "recall": round(100 * recall, 2),
                            "f1": round(100 * f1, 2), "support": support}
    return per_class


def _macro_f1(per_class: dict[str, dict[str, Any]]) -> float:
    """The mean F1 of the labels that occur in the gold data."""
    present = [c for c in per_class.values() if c["support"]]
    return round(sum(c["f1"] for c in present) / max(len(present), 1), 2)


def multi_label_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]],
                       labels: Sequence[str]) -> dict[str, Any]:
    """Scores of label sets (a multi-label classifier): ``accuracy`` is the exact match (the
    whole set right), ``micro_f1`` is over every (utterance, label) decision, ``macro_f1`` the
    mean of the F1 of the labels that occur in ``gold``; per-label figures. In percent."""
    counts = {label: [0, 0, 0] for label in labels}  # true positives, predicted, gold
    exact = 0
    for g, p in zip(gold, predicted):
        gold_set, predicted_set = set(g), set(p)
        exact += gold_set == predicted_set
        for label in predicted_set:
            counts[label][1] += 1
            counts[label][0] += label in gold_set
        for label in gold_set:
            counts[label][2] += 1
    per_class = _per_class({label: (tp, n, support) for label, (tp, n, support) in counts.items()})
    micro = _f1(*(sum(c[i] for c in counts.values()) for i in range(3)))[2]
    return {"accuracy": round(100 * exact / max(len(gold), 1), 2),
            "micro_f1": round(100 * micro, 2),
            "macro_f1": _macro_f1(per_class),
            "per_class": per_class, "classes": list(labels), "multi_label": True}


def slot_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Span precision/recall/F1 as conlleval computes them (seqeval's default mode), overall and
    per slot type."""
    gold, predicted = [list(t) for t in gold], [list(t) for t in predicted]
    report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    percent = lambda value: round(100 * float(value), 2)  # noqa: E731  (numpy -> float)
    per_slot = {name: {"precision": percent(v["precision"]), "recall": percent(v["recall"]),
                       "f1": percent(v["f1-score"]), "support": int(v["support"])}
                for name, v in report.items() if not name.endswith(" avg")}
    return {"slot_f1": percent(f1_score(gold, predicted, zero_division=0)),
            "slot_precision": percent(precision_score(gold, predicted, zero_division=0)),
            "slot_recall": percent(recall_score(gold, predicted, zero_division=0)),
            "per_slot": per_slot}


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams of the texts (words), in percent (Li et al., 2016)."""
    grams = [tuple(words[i:i + n]) for words in (t.split() for t in texts)
             for i in range(len(words) - n + 1)]
    return round(100 * len(set(grams)) / max(len(grams), 1), 2)


def _per_label_table(rows: dict[str, dict], name: str) -> Table:
    ordered = sorted(rows.items(), key=lambda item: (-item[1]["support"], item[0]))
    return Table([name, "precision", "recall", "F1", "support"],
                 [[k, v["precision"], v["recall"], v["f1"], v["support"]] for k, v in ordered])


def _examples_table(rows: Sequence[dict]) -> Table:
    header = list(rows[0]) if rows else ["line"]
    return Table(header, [[r[h] for h in header] for r in rows])


REPORT_KEYS = {"accuracy", "macro_f1", "micro_f1", "multi_label", "threshold", "per_class",
               "confusion_matrix", "classes", "slot_f1",
               "slot_precision", "slot_recall", "per_slot", "confusion_png", "errors", "perplexity",
               "distinct_1", "distinct_2", "intent_fidelity", "samples", "learning_curve",
               "test_set", "num_examples", "temperature", "top_k", "joint_decoding"}


def labelling_sections(report: dict[str, Any]) -> list[Section]:
    """The report of a classify, tag or generate run, whichever figures it has."""
    out = []
    test = f"Test set: `{report['test_set']}` ({report['num_examples']:,} utterances)."
    if report.get("joint_decoding"):
        test += (" Class and slot tags decoded jointly: each class keeps to the slot types seen "
                 "with it in training.")
    if "accuracy" in report and report.get("multi_label"):
        threshold = f" above {report['threshold']}" if "threshold" in report else ""
        out.append(Section("Multi-label classification", [
            test + f" Each utterance gets every label with a probability{threshold}, at least its "
            "most likely one. Exact match: the whole label set right; micro-F1 over every "
            "(utterance, label) decision; macro-F1: the mean of the labels' F1.",
            Table(["metric", "score"], [["exact-match accuracy", report["accuracy"]],
                                        ["micro-F1", report["micro_f1"]],
                                        ["macro-F1", report["macro_f1"]]]),
            _per_label_table(report["per_class"], "label")]))
    elif "accuracy" in report:
        out.append(Section("Intent classification", [
            test, Table(["metric", "score"], [["accuracy", report["accuracy"]],
                                              ["macro-F1", report["macro_f1"]]]),
            _per_label_table(report["per_class"], "class"),
            Image(report["confusion_png"], "confusion matrix")]))
    if "slot_f1" in report:
        out.append(Section("Slot filling", [
            test + " Span-level scores as conlleval computes them (seqeval), on words.",
            Table(["metric", "score"], [["slot F1", report["slot_f1"]],
                                        ["precision", report["slot_precision"]],
                                        ["recall", report["slot_recall"]]]),
            _per_label_table(report["per_slot"], "slot")]))
    if "perplexity" in report:
        fidelity = report.get("intent_fidelity")
        out.append(Section("Generation", [
            test + f" Samples at temperature {report['temperature']}, top-k {report['top_k']}.",
            Table(["metric", "score"], [
                ["perplexity of the test utterances given their intent", report["perplexity"]],
                ["distinct-1 (%)", report["distinct_1"]], ["distinct-2 (%)", report["distinct_2"]],
                ["intent fidelity (%)", "not measured (no judge checkpoint)" if fidelity is None
                 else fidelity]])]))
        if report.get("samples"):
            out.append(Section("Samples", [_examples_table(report["samples"])]))
    if report.get("errors"):
        out.append(Section("Errors (first test utterances the model gets wrong)",
                           [_examples_table(report["errors"])]))
    if report.get("hypothesis_files"):
        files = ", ".join(f"`{name}`" for name in report["hypothesis_files"].values())
        out.append(Section("Predictions", [f"Every prediction, a line per test utterance: {files}."]))
    if report.get("learning_curve"):
        out.append(Section("Learning curve", [Image(report["learning_curve"], "learning curve")]))
    return out + run_sections(report, REPORT_KEYS)
