"""``seq2seq-evaluate`` / ``python scripts/evaluate.py``: score translations, write a report.

Either translate a source file with a checkpoint (or an ensemble of several) and score the output
    --checkpoint PATH [PATH ...] --src F --ref F [--beam N]
or score an existing output
    --hyp F --ref F
Prints BLEU, chrF and TER with their sacrebleu signatures and 95% bootstrap intervals, and writes
report.md and report.json (and report.html with --html) into --report-dir. With --baseline (a
second system's output file, or a checkpoint that translates --src), adds a paired bootstrap test.

Checkpoints of the other topologies are scored on their own terms:
    classify  --src utterances --ref classes               accuracy, macro-F1, confusion matrix
    tag       --src utterances --ref tags [--labels F]     slot F1 per slot (and class accuracy)
    generate  --src classes --ref utterances [--judge C]   perplexity, distinct-1/2, intent fidelity
and existing classify or tag output with --hyp F --ref F --task classify|tag.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from seq2seq.data.corpus import read_lines, write_lines
from seq2seq.errors import CheckpointError, DataError, Seq2SeqError
from seq2seq.evaluation.report import evaluation_report, line_count
from seq2seq.models import count_parameters
from seq2seq.precision import add_precision_option, resolve_precision
from seq2seq.training.checkpoint import checkpoint_task, load_checkpoint
from seq2seq.translate import Translator, comparable_references


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="seq2seq-evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", nargs="+",
                        help="translate --src with this checkpoint (several translation "
                             "checkpoints: their ensemble)")
    parser.add_argument("--src", help="source sentences, one per line")
    parser.add_argument("--hyp", help="translations to score, one per line (instead of --checkpoint)")
    parser.add_argument("--ref", required=True, help="reference translations, one per line")
    parser.add_argument("--baseline", help="a second system: its output file, or a checkpoint (.pt)")
    parser.add_argument("--beam", type=int, default=None, help="beam width (with checkpoints)")
    parser.add_argument("--length-penalty", type=float, default=None,
                        help="GNMT length penalty alpha (with checkpoints); default: the checkpoint's")
    add_precision_option(parser)
    parser.add_argument("--report-dir", default=".", help="where the report files go")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--attention-plots", type=int, default=3,
                        help="attention heatmaps for the first N sentences (with --checkpoint)")
    parser.add_argument("--html", action="store_true", help="also write a self-contained report.html")
    parser.add_argument("--labels", help="tag checkpoints of joint models: the gold classes")
    parser.add_argument("--task", choices=("translate", "classify", "tag"), default="translate",
                        help="with --hyp: what the lines are (translations, classes, tag sequences)")
    parser.add_argument("--judge", help="generate checkpoints: a classify checkpoint that scores "
                                        "intent fidelity")
    args = parser.parse_args(argv)
    if bool(args.checkpoint) == bool(args.hyp):
        parser.error("give either --checkpoint with --src, or --hyp")
    if args.checkpoint and not args.src:
        parser.error("--checkpoint needs --src")
    if args.baseline and args.baseline.endswith(".pt") and not args.src:
        parser.error("a baseline checkpoint needs --src to translate")
    return args


def read_aligned(path: str, references: list[str], what: str) -> list[str]:
    lines = read_lines(path, allow_empty=True)
    if len(lines) != len(references):
        raise DataError(f"line counts differ: {what} {path} has {len(lines)} lines, "
                        f"the references have {len(references)}")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    members = args.checkpoint or []
    args.checkpoint = members[0] if members else None
    try:
        payload = load_checkpoint(args.checkpoint) if args.checkpoint else None
        task = checkpoint_task(payload) if payload else args.task
        if task != "translate":
            if len(members) > 1:
                raise CheckpointError(f"{args.checkpoint}: a {task} checkpoint; only "
                                      "translation checkpoints make ensembles")
            return evaluate_labels(args, task, payload)
        references = read_lines(args.ref, allow_empty=True)
        sources = read_aligned(args.src, references, "--src") if args.src else [""] * len(references)
        facts: dict = {"data_files": {p: line_count(p) for p in (args.src, args.ref, args.hyp)
                                      if p}}
        attention: list = []
        if args.checkpoint:
            translator = Translator.from_checkpoints(members, payload, beam=args.beam,
                                                     length_penalty=args.length_penalty,
                                                     precision=args.precision)
            references = comparable_references(references, translator.writes_lowercase)
            hypotheses = translator.translate(sources)
            decode_seconds = translator.last_seconds  # before the attention pass below resets it
            attention = translator.translate_detailed(sources[: args.attention_plots],
                                                      return_attention=True)
            facts.update(checkpoint=" + ".join(members), beam=translator.search.beam,
                         length_penalty=translator.search.length_penalty,
                         decode_precision=resolve_precision(translator.search.precision),
                         num_params=count_parameters(translator.model),
                         decode_seconds=round(decode_seconds, 2),
                         references_lowercased=translator.writes_lowercase,
                         recased=translator.recaser is not None)
            hyp_path = write_lines(Path(args.report_dir) / "hypotheses.txt", hypotheses)
            facts["hypothesis_file"] = str(hyp_path)
        else:
            hypotheses = read_aligned(args.hyp, references, "--hyp")
            facts["hypothesis_file"] = args.hyp
        baseline = None
        if args.baseline and args.baseline.endswith(".pt"):
            baseline = Translator.from_checkpoint(args.baseline, beam=args.beam,
                                                  length_penalty=args.length_penalty,
                                                  precision=args.precision).translate(sources)
        elif args.baseline:
            baseline = read_aligned(args.baseline, references, "--baseline")
        report = evaluation_report(
            sources, references, hypotheses, args.report_dir, args.ref, baseline=baseline,
            baseline_name=args.baseline or "baseline", attention=attention,
            n_bootstrap=args.bootstrap, html=args.html, **facts)
    except (Seq2SeqError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for name, key in (("BLEU", "bleu"), ("chrF", "chrf"), ("TER", "ter")):
        interval = report.get(f"{key}_ci")
        ci = f" (95% CI {interval[0]:.2f}-{interval[1]:.2f})" if interval else ""
        print(f"{name} = {report[key]:.2f}{ci}  {report[f'{key}_signature']}")
    print(f"BLEU (lowercased) = {report['bleu_lc']:.2f}  {report['bleu_lc_signature']}")
    for result in report.get("baseline", {}).get("results", []):
        print(f"vs baseline: {result['metric']} {result['system']:.2f} vs {result['baseline']:.2f}, "
              f"p = {result['p_value']:.4f}{' (significant)' if result['significant'] else ''}")
    print(f"report: {Path(args.report_dir) / 'report.md'}")
    return 0


def evaluate_labels(args: argparse.Namespace, task: str, payload: Optional[dict]) -> int:
    """Score a classify, tag or generate checkpoint (``payload``: loaded) and write its report."""
    from seq2seq.data.labelled import LabelledSplit, check_one_tag_per_word
    from seq2seq.topologies.generation import Generator, generation_report
    from seq2seq.topologies.labelling import Labeller, labelling_report

    references = read_lines(args.ref)
    report_dir = Path(args.report_dir)
    if args.hyp:
        return score_label_file(args, task, references, report_dir)
    inputs = read_aligned(args.src, references, "--src")
    if task == "generate":
        system = Generator.from_checkpoint(args.checkpoint, payload)
        report = generation_report(system, [c.strip() for c in inputs], references, args.src,
                                   args.judge)
    else:
        system = Labeller.from_checkpoint(args.checkpoint, payload)
        words = [line.split() for line in inputs]
        tags = [line.split() for line in references] if task == "tag" else None
        check_one_tag_per_word(words, tags or [], args.ref, args.src)
        labels = [c.strip() for c in references] if task == "classify" else \
            ([c.strip() for c in read_aligned(args.labels, references, "--labels")]
             if args.labels else None)
        report = labelling_report(system, LabelledSplit(words, labels, tags, {"text": args.src}),
                                  report_dir)
    report.update(checkpoint=args.checkpoint, num_params=count_parameters(system.model),
                  data_files={p: line_count(p) for p in (args.src, args.ref, args.labels) if p})
    return finish_label_report(report, report_dir, args.html)


def score_label_file(args: argparse.Namespace, task: str, references: list[str],
                     report_dir: Path) -> int:
    """Score existing classify or tag output (--hyp) against --ref, no checkpoint needed."""
    from seq2seq.data.labelled import check_one_tag_per_word
    from seq2seq.evaluation.labels import classification_scores, slot_scores
    from seq2seq.evaluation.plots import plot_confusion

    hypotheses = read_aligned(args.hyp, references, "--hyp")
    report: dict = {"topology": task, "test_set": args.ref, "num_examples": len(references),
                    "hypothesis_file": args.hyp}
    if task == "classify":
        gold, predicted = [r.strip() for r in references], [h.strip() for h in hypotheses]
        report.update(classification_scores(gold, predicted, sorted(set(gold) | set(predicted))))
        report_dir.mkdir(parents=True, exist_ok=True)
        plot_confusion(report["confusion_matrix"], report["classes"], report_dir / "confusion.png")
        report["confusion_png"] = "confusion.png"
    else:
        gold, predicted = [r.split() for r in references], [h.split() for h in hypotheses]
        check_one_tag_per_word(gold, predicted, args.hyp, args.ref)
        report.update(slot_scores(gold, predicted))
    return finish_label_report(report, report_dir, args.html)


def finish_label_report(report: dict, report_dir: Path, html: bool) -> int:
    from seq2seq.evaluation.labels import labelling_sections
    from seq2seq.evaluation.report import library_versions, write_report

    report.setdefault("versions", library_versions())
    write_report(report, report_dir, html=html, content=labelling_sections(report))
    for key in ("accuracy", "macro_f1", "slot_f1", "perplexity", "distinct_1", "distinct_2",
                "intent_fidelity"):
        if report.get(key) is not None:
            print(f"{key} = {report[key]:.2f}")
    print(f"report: {report_dir / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
