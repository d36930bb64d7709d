"""Command-line entry points (also installed as console scripts seq2seq-train, ...)."""

from __future__ import annotations

import argparse

from seq2seq import __version__

VERSION = f"seq2seq {__version__}"


def add_version_option(parser: argparse.ArgumentParser) -> None:
    """``--version``: print ``seq2seq X.Y.Z`` and exit 0, as every seq2seq tool does."""
    parser.add_argument("--version", action="version", version=VERSION)
