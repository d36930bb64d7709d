#!/usr/bin/env python
"""Recase lowercased text: python scripts/recase.py (--train CASED_FILE | --checkpoint PATH) < in > out"""

import sys

from seq2seq.cli.recase import main

if __name__ == "__main__":
    sys.exit(main())
