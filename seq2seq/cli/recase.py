"""``seq2seq-recase`` / ``python scripts/recase.py``: put the case back into lowercased text.

Reads standard input (or --input) and writes standard output (or --output), one line out for every
line in. The casing model (seq2seq/recase.py) is fitted on a cased text file (--train, e.g. the
training targets of a model trained with tokenizer.normalization=nmt_nfkc_cf) or is the one stored
in a checkpoint trained with tokenizer.recase=true (--checkpoint):

    python scripts/recase.py --train $SEQ2SEQ_DATA_DIR/multi30k/train.de < lowercased.de > cased.de
"""

from __future__ import annotations

import argparse
import sys
from typing import BinaryIO, Optional, Sequence, TextIO

from seq2seq.cli import add_version_option, unexpected_error
from seq2seq.cli.lines import AtomicOutput, stream_lines
from seq2seq.data.corpus import read_lines
from seq2seq.errors import CheckpointError, Seq2SeqError
from seq2seq.recase import Recaser
from seq2seq.training.checkpoint import load_checkpoint
from seq2seq.translate import checkpoint_recaser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="seq2seq-recase", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version_option(parser)
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--train", help="cased text to fit the casing model on, one sentence per line")
    model.add_argument("--checkpoint", help="a checkpoint trained with tokenizer.recase=true")
    parser.add_argument("--input", default=None, help="input file (default: standard input)")
    parser.add_argument("--output", default=None, help="output file (default: standard output)")
    return parser.parse_args(argv)


def load_recaser(args: argparse.Namespace) -> Recaser:
    if args.train:
        return Recaser.fit(read_lines(args.train, allow_empty=True))
    recaser = checkpoint_recaser(load_checkpoint(args.checkpoint))
    if recaser is None:
        raise CheckpointError(f"{args.checkpoint}: holds no recaser (it was not trained with "
                              "tokenizer.recase=true); give --train with its cased training targets")
    return recaser


def main(argv: Optional[Sequence[str]] = None, stdin: Optional[BinaryIO] = None,
         stdout: Optional[TextIO] = None) -> int:
    """Run the tool; ``stdin``/``stdout`` replace the process's streams (tests)."""
    args = parse_args(argv)
    try:
        recaser = load_recaser(args)
        source = open(args.input, "rb") if args.input else (stdin or sys.stdin.buffer)
        with source, AtomicOutput(args.output, stdout) as out:
            for line in stream_lines(source, args.input or "<stdin>"):
                out.write(recaser.recase(line) + "\n")
    except (Seq2SeqError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # anything else: one line, not a traceback
        return unexpected_error(err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
