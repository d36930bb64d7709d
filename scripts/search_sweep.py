#!/usr/bin/env python
"""Tune beam and length penalty on a validation set:
python scripts/search_sweep.py --checkpoint F --src S --ref R --beams 5 10 --length-penalties 0.6 1.0
"""

import sys

from seq2seq.cli.search_sweep import main

if __name__ == "__main__":
    sys.exit(main())
