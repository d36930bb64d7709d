"""``seq2seq-translate`` / ``python scripts/translate.py``: run a checkpoint on a text stream.

Reads standard input (or --input) and writes standard output (or --output): exactly one line out
for every line in, in order; an empty or blank line gives an empty line. What a line out is
depends on the checkpoint's topology: a translation (translate), a class (classify), one tag per
word (tag; joint models print the class, a tab, the tags), or an utterance for the class named on
the line (generate).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from itertools import islice
from typing import BinaryIO, Iterable, Iterator, Optional, Sequence, TextIO

from seq2seq.cli import add_version_option, unexpected_error
from seq2seq.cli.lines import AtomicOutput, stream_lines
from seq2seq.cli.progress import LineProgress
from seq2seq.device import add_device_option, resolve_device
from seq2seq.errors import Seq2SeqError
from seq2seq.precision import add_precision_option
from seq2seq.predict import load_predictor
from seq2seq.topologies.base import PredictOptions


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
    parser.add_argument("--temperature", type=float, default=None,
                        help="generate: sampling temperature (0 = greedy)")
    parser.add_argument("--top-k", type=int, default=None, help="generate: sample among the top k")
    parser.add_argument("--input", default=None, help="input file (default: standard input)")
    parser.add_argument("--output", default=None, help="output file (default: standard output)")
    parser.add_argument("--chunk", type=int, default=1000,
                        help="lines read before translating (1 when input is a terminal)")
    return parser.parse_args(argv)


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
            device=args.device))
        source = open(args.input, "rb") if args.input else (stdin or sys.stdin.buffer)
        chunk = 1 if source.isatty() else max(1, args.chunk)
        # A bar on a terminal's stderr only: a pipe or a log gets the tool's own lines alone.
        with source, AtomicOutput(args.output, stdout) as out, \
                LineProgress(desc="translated", show=chunk > 1) as bar:  # no bar over typed lines
            done = 0
            for lines in chunks(stream_lines(source, args.input or "<stdin>"), chunk):
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
