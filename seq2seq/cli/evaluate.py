"""``seq2seq-evaluate`` / ``python scripts/evaluate.py``: score translations, write a report.

Either translate a source file with a checkpoint and score the output
    --checkpoint PATH --src F --ref F [--beam N]
or score an existing output
    --hyp F --ref F
and print BLEU and chrF with their sacrebleu signatures; report.md and report.json go to
--report-dir (default: the current folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from seq2seq.data.corpus import read_lines, write_lines
from seq2seq.errors import DataError, Seq2SeqError
from seq2seq.evaluation.bleu import score_corpus
from seq2seq.evaluation.report import build_report, write_report
from seq2seq.models import count_parameters
from seq2seq.translate import Translator


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="seq2seq-evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="translate --src with this checkpoint")
    parser.add_argument("--src", help="source sentences, one per line (with --checkpoint)")
    parser.add_argument("--hyp", help="translations to score, one per line (instead of --checkpoint)")
    parser.add_argument("--ref", required=True, help="reference translations, one per line")
    parser.add_argument("--beam", type=int, default=None, help="beam width (with --checkpoint)")
    parser.add_argument("--report-dir", default=".", help="where report.md/report.json go")
    args = parser.parse_args(argv)
    if bool(args.checkpoint) == bool(args.hyp):
        parser.error("give either --checkpoint with --src, or --hyp")
    if args.checkpoint and not args.src:
        parser.error("--checkpoint needs --src")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        references = read_lines(args.ref, allow_empty=True)
        facts: dict = {}
        if args.checkpoint:
            translator = Translator.from_checkpoint(args.checkpoint, beam=args.beam)
            sources = read_lines(args.src, allow_empty=True)
            if len(sources) != len(references):
                raise DataError(f"line counts differ: {args.src} has {len(sources)} lines, "
                                f"{args.ref} has {len(references)}")
            hypotheses = translator.translate(sources)
            facts = {"checkpoint": args.checkpoint, "source_file": args.src,
                     "beam": translator.search.beam,
                     "num_params": count_parameters(translator.model),
                     "decode_seconds": round(translator.last_seconds, 2)}
            hyp_path = write_lines(Path(args.report_dir) / "hypotheses.txt", hypotheses)
            facts["hypothesis_file"] = str(hyp_path)
        else:
            hypotheses = read_lines(args.hyp, allow_empty=True)
            sources = [""] * len(hypotheses)
            facts = {"hypothesis_file": args.hyp}
        scores = score_corpus(hypotheses, references)
        report = build_report(scores, args.ref, sources, references, hypotheses, **facts)
        json_path, md_path = write_report(report, args.report_dir)
    except (Seq2SeqError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"BLEU = {scores.bleu:.2f}  {scores.bleu_signature}")
    print(f"chrF = {scores.chrf:.2f}  {scores.chrf_signature}")
    print(f"BLEU (lowercased) = {scores.bleu_lc:.2f}  {scores.bleu_lc_signature}")
    print(f"report: {md_path} {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
