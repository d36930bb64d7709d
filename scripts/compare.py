#!/usr/bin/env python
"""Leaderboard of runs: python scripts/compare.py RUN_OR_SWEEP_DIR ... [--out DIR]"""

import sys

from seq2seq.cli.compare import main

if __name__ == "__main__":
    sys.exit(main())
