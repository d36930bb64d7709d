#!/usr/bin/env python
"""Translate lines: python scripts/translate.py --checkpoint PATH [--beam N] < in > out"""

import sys

from seq2seq.cli.translate import main

if __name__ == "__main__":
    sys.exit(main())
