#!/usr/bin/env python
"""Training and decoding speed on Multi30k, side by side with the plain-PyTorch floor."""

import sys

from seq2seq.cli.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
