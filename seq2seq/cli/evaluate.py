"""``seq2seq-evaluate`` / ``python scripts/evaluate.py``: score translations, write a report.

Either translate a source file with a checkpoint (or an ensemble of several) and score the output
    --checkpoint PATH [PATH ...] --src F --ref F [--beam N]
or score an existing output
    --hyp F --ref F
Prints BLEU, chrF and TER with their sacrebleu signatures and 95% bootstrap intervals, and writes
report.md and report.json (and report.html with --html) into --report-dir. With --baseline (a
second system's output file, or a checkpoint that translates --src), adds a paired bootstrap test.
BLEU uses sacrebleu's --tokenize (default: the checkpoint's evaluation.tokenize, else auto: zh,
ja-mecab or ko-mecab for Chinese, Japanese or Korean targets, from --tgt-lang or the checkpoint).

Checkpoints of the other topologies are scored on their own terms:
    classify  --src utterances --ref classes               accuracy, macro-F1, confusion matrix
    tag       --src utterances --ref tags [--labels F]     slot F1 per slot (and class accuracy)
    generate  --src classes --ref utterances [--judge C]   perplexity, distinct-1/2, intent fidelity
and existing classify or tag output with --hyp F --ref F --task classify|tag.

With --nbest N (translation checkpoints), the scores stay those of the best translation of each
line (the same as without --nbest); the N best of each line also go to nbest.txt in --report-dir,
in the Moses format 'SENT_INDEX ||| hypothesis ||| score' (0-based line, log-probability, best
first), and the report adds the oracle: BLEU and chrF of the hypothesis of each list with the best
sentence chrF against its reference: a measure of what reranking the lists could gain.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

from seq2seq.cli import add_version_option, unexpected_error
from seq2seq.cli.progress import ProgressPredictor
from seq2seq.device import add_device_option, resolve_device
from seq2seq.errors import Seq2SeqError
from seq2seq.evaluation.bleu import add_tokenize_options, tool_tokenizer
from seq2seq.nbest import nbest_recorder, report_nbest
from seq2seq.precision import add_precision_option
from seq2seq.predict import load_predictor
from seq2seq.topologies.base import EvaluationRequest, PredictOptions
from seq2seq.topologies.registry import checkpoint_topology, topology_named
from seq2seq.training.checkpoint import load_model_checkpoint


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="seq2seq-evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version_option(parser)
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
    add_device_option(parser)
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
    add_tokenize_options(parser, "the checkpoint's evaluation.tokenize, else auto")
    parser.add_argument("--nbest", type=int, default=None, metavar="N",
                        help="with --checkpoint: also write the N best translations of each line "
                             "to nbest.txt ('SENT_INDEX ||| hypothesis ||| score') and report "
                             "the oracle BLEU and chrF (best of each list by sentence chrF); "
                             "N <= the beam width. The scores stay the 1-best's")
    args = parser.parse_args(argv)
    if args.nbest is not None and (args.nbest < 1 or not args.checkpoint):
        parser.error("--nbest N: expected N >= 1, with --checkpoint (lists are decoded)")
    if args.nbest is not None and args.beam is not None and args.nbest > args.beam:
        parser.error(f"--nbest {args.nbest} is more than --beam {args.beam}; expected --nbest "
                     "<= --beam")
    if bool(args.checkpoint) == bool(args.hyp):
        parser.error("give either --checkpoint with --src, or --hyp")
    if args.checkpoint and not args.src:
        parser.error("--checkpoint needs --src")
    if args.baseline and args.baseline.endswith(".pt") and not args.src:
        parser.error("a baseline checkpoint needs --src to translate")
    return args


def request_from(args: argparse.Namespace) -> EvaluationRequest:
    options = PredictOptions(beam=args.beam, length_penalty=args.length_penalty,
                             precision=args.precision, device=args.device)
    return EvaluationRequest(ref=args.ref, report_dir=Path(args.report_dir), src=args.src,
                             hyp=args.hyp, checkpoints=tuple(args.checkpoint or ()),
                             baseline=args.baseline, labels=args.labels, judge=args.judge,
                             bootstrap=args.bootstrap, attention_plots=args.attention_plots,
                             html=args.html, options=options)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    request = request_from(args)
    config = None  # a checkpoint's stored config: its BLEU tokenizer and target language
    recorder = None  # --nbest: keeps the n-best lists of the predictor's translations
    try:
        resolve_device(args.device, "--device")  # a missing GPU: refused before any work
        if request.checkpoints and Path(request.checkpoints[0]).is_dir():
            # a folder written by seq2seq-export: a translation model, decoded by onnxruntime
            topology = topology_named("translate")
            predictor = load_predictor(request.checkpoints, request.options)
            recorder = nbest_recorder(predictor, args.nbest)
            predictor = ProgressPredictor(recorder or predictor)
        elif request.checkpoints:
            # The checkpoint's topology scores its own predictions.
            payload = load_model_checkpoint(request.checkpoints[0])
            config = payload.get("config")
            topology = checkpoint_topology(payload)
            predictor = topology.load_predictor(payload, request.checkpoints, request.options)
            recorder = nbest_recorder(predictor, args.nbest)
            # a bar on a terminal's stderr while it decodes
            predictor = ProgressPredictor(recorder or predictor)
        else:
            topology, predictor = topology_named(args.task), None
        request = replace(request, tokenize=tool_tokenizer(args.tokenize, args.tgt_lang, config))
        report = topology.evaluate(request, predictor)
        nbest_summary = [] if recorder is None else report_nbest(recorder, report, request)
    except (Seq2SeqError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # anything else: one line, not a traceback
        return unexpected_error(err)
    for line in topology.summary(report) + nbest_summary:
        print(line)
    print(f"report: {request.report_dir / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
