"""``seq2seq-translate`` / ``python scripts/translate.py``: run a checkpoint on a text stream.

Reads standard input (or --input) and writes standard output (or --output): exactly one line out
for every line in, in order; an empty or blank line gives an empty line. What a line out is
depends on the checkpoint's topology: a translation (translate), a class (classify), one tag per
word (tag; joint models print the class, a tab, the tags), or an utterance for the class named on
the line (generate).

With --nbest N (translation checkpoints), each line in gives N lines out instead, in the Moses
n-best format
    SENT_INDEX ||| hypothesis ||| score
SENT_INDEX: the 0-based number of the input line; score: the hypothesis's log-probability under
the model (beam search: divided by the GNMT length penalty), best first. N is at most the beam
width; with --sampling, N is the number of independent samples. An empty input line gives N
empty hypotheses of score 0; a beam that runs out of prefixes (under a very short output limit)
may give fewer than N lines. --nbest 1 writes one such line per input line.

--sampling draws each output token from the model's distribution instead of searching (diverse
outputs, back-translation), shaped by --temperature, --top-k and --top-p; --seed makes the draws
reproducible (the same input, seed, --batch-size and --chunk give the same output).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from itertools import islice
from typing import BinaryIO, Iterable, Iterator, Optional, Sequence, TextIO, cast

from seq2seq.cli import add_version_option, unexpected_error
from seq2seq.cli.lines import AtomicOutput, stream_lines
from seq2seq.cli.progress import LineProgress
from seq2seq.device import add_device_option, resolve_device
from seq2seq.errors import ConfigError, Seq2SeqError
from seq2seq.nbest import nbest_line
from seq2seq.precision import add_precision_option
from seq2seq.predict import load_predictor
from seq2seq.search import check_nbest
from seq2seq.topologies.base import PredictOptions, Predictor
from seq2seq.translate import Translator


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="seq2seq-translate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version_option(parser)
    parser.add_argument("--checkpoint", required=True, nargs="+",
                        help="a best.pt or last.pt file, a release (seq2seq-release) or a folder "
                             "exported by seq2seq-export (decoded with onnxruntime); several "
                             "translation checkpoints of the same vocabulary decode as an ensemble "
                             "(mean of their probabilities)")
    parser.add_argument("--beam", type=int, default=None,
                        help="beam width (1 = greedy); default: the checkpoint's search.beam")
    parser.add_argument("--length-penalty", type=float, default=None,
                        help="GNMT length penalty alpha; default: the checkpoint's search.length_penalty")
    add_precision_option(parser)
    add_device_option(parser)
    parser.add_argument("--batch-size", type=int, default=None, help="sentences per batch")
    parser.add_argument("--nbest", type=int, default=None, metavar="N",
                        help="translate: write the N best translations of each line, N lines "
                             "per line in, as 'SENT_INDEX ||| hypothesis ||| score' (0-based "
                             "line number, log-probability; best first); N <= the beam width, or "
                             "with --sampling N samples. Default: the translation alone")
    parser.add_argument("--sampling", action=argparse.BooleanOptionalAction, default=None,
                        help="translate: draw each token from the model's distribution instead "
                             "of beam search (--beam unused); default: the checkpoint's "
                             "search.sampling (false unless trained with search=sampling)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="sampling temperature: below 1 sharper, above 1 flatter (translate: "
                             "with --sampling, > 0, default 1; generate: 0 = greedy)")
    parser.add_argument("--top-k", type=int, default=None,
                        help="sample among the k most likely pieces (0: all; translate: with "
                             "--sampling)")
    parser.add_argument("--top-p", type=float, default=None,
                        help="translate, with --sampling: nucleus sampling, among the most "
                             "likely pieces whose probabilities sum to p, in (0, 1] (1: all)")
    parser.add_argument("--seed", type=int, default=None,
                        help="translate, with --sampling: seed of the draws, for reproducible "
                             "output (default: other draws each run)")
    parser.add_argument("--input", default=None, help="input file (default: standard input)")
    parser.add_argument("--output", default=None, help="output file (default: standard output)")
    parser.add_argument("--chunk", type=int, default=1000,
                        help="lines read before translating (1 when input is a terminal)")
    args = parser.parse_args(argv)
    if args.nbest is not None and args.nbest < 1:
        parser.error(f"--nbest {args.nbest}: expected at least 1 hypothesis per line")
    if args.sampling and args.beam is not None:
        parser.error("--beam and --sampling exclude each other: sampling draws tokens, it does "
                     "not search (give --nbest N for N samples)")
    if args.nbest is not None and args.beam is not None and not args.sampling:
        if args.nbest > args.beam:
            parser.error(f"--nbest {args.nbest} is more than --beam {args.beam}: beam search "
                         "keeps that many hypotheses; expected --nbest <= --beam")
    return args


def check_predictor_options(args: argparse.Namespace, predictor: Predictor) -> None:
    """Refuse options the loaded predictor would ignore: n-best lists, --sampling, --top-p and
    --seed are a translation model's; its sampling options need sampling on."""
    if not isinstance(predictor, Translator):
        given = [flag for flag, value in (("--nbest", args.nbest), ("--sampling", args.sampling),
                                          ("--top-p", args.top_p), ("--seed", args.seed))
                 if value is not None]
        if given:
            raise ConfigError(f"{', '.join(given)}: for translation checkpoints only; this one "
                              "predicts another kind of output (generate samples with "
                              "--temperature and --top-k)")
        return
    search = predictor.search
    if not search.sampling:
        given = [flag for flag, value in (("--temperature", args.temperature),
                                          ("--top-k", args.top_k), ("--top-p", args.top_p),
                                          ("--seed", args.seed)) if value is not None]
        if given:
            raise ConfigError(f"{', '.join(given)}: sampling options; add --sampling (this "
                              "checkpoint searches with a beam)")
        if args.nbest is not None:
            check_nbest(args.nbest, search.beam, "--nbest")


def chunks(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(lines)
    while chunk := list(islice(iterator, size)):
        yield chunk


def main(argv: Optional[Sequence[str]] = None, stdin: Optional[BinaryIO] = None,
         stdout: Optional[TextIO] = None) -> int:
    """Run the tool; ``stdin``/``stdout`` replace the process's streams (tests)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)
    try:
        resolve_device(args.device, "--device")  # a missing GPU: refused before loading
        predictor = load_predictor(args.checkpoint, PredictOptions(
            beam=args.beam, batch_size=args.batch_size, length_penalty=args.length_penalty,
            precision=args.precision, temperature=args.temperature, top_k=args.top_k,
            sampling=args.sampling, top_p=args.top_p, seed=args.seed, device=args.device))
        check_predictor_options(args, predictor)
        source = open(args.input, "rb") if args.input else (stdin or sys.stdin.buffer)
        chunk = 1 if source.isatty() else max(1, args.chunk)
        # A bar on a terminal's stderr only: a pipe or a log gets the tool's own lines alone.
        with source, AtomicOutput(args.output, stdout) as out, \
                LineProgress(desc="translated", show=chunk > 1) as bar:  # no bar over typed lines
            done = 0
            for lines in chunks(stream_lines(source, args.input or "<stdin>"), chunk):
                if args.nbest is not None:
                    lists = cast(Translator, predictor).translate_detailed(
                        lines, line_offset=done, nbest=args.nbest)
                    for index, translations in enumerate(lists, start=done):
                        out.writelines(nbest_line(index, t.text, t.score) for t in translations)
                else:
                    for text in predictor.predict(lines, done):
                        out.write(text.replace("\n", " ") + "\n")
                out.flush()
                done += len(lines)
                bar.update(len(lines))
    except BrokenPipeError:
        if args.output is not None:  # not our output's reader: the --output file was not written
            print("error: broken pipe; the output was not written", file=sys.stderr)
            return 2
        # The reader stopped early (`| head -1`): end quietly, as Unix filters do, and keep
        # Python from complaining about the closed pipe when it flushes stdout at exit.
        if stdout is None:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (Seq2SeqError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # anything else: one line, not a traceback
        return unexpected_error(err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
