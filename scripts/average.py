#!/usr/bin/env python
"""Average checkpoints: python scripts/average.py CHECKPOINT_OR_FOLDER ... --out FILE"""

import sys

from seq2seq.cli.average import main

if __name__ == "__main__":
    sys.exit(main())
