"""Command-line entry points (also installed as console scripts seq2seq-train, ...)."""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from seq2seq import __version__

VERSION = f"seq2seq {__version__}"


def add_version_option(parser: argparse.ArgumentParser) -> None:
    """``--version``: print ``seq2seq X.Y.Z`` and exit 0, as every seq2seq tool does."""
    parser.add_argument("--version", action="version", version=VERSION)


def unexpected_error(err: Exception) -> int:
    """Report an error no check foresaw in one line (``SEQ2SEQ_DEBUG=1``: the whole traceback)
    and return the exit status 1; the named errors of the package exit with 2."""
    if os.environ.get("SEQ2SEQ_DEBUG"):
        traceback.print_exception(err)
    else:
        print(f"error: unexpected {type(err).__name__}: {err} (SEQ2SEQ_DEBUG=1 shows where)",
              file=sys.stderr)
    return 1
