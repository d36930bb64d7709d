#!/usr/bin/env python
"""Score translations: python scripts/evaluate.py (--checkpoint PATH --src F | --hyp F) --ref F"""

import sys

from seq2seq.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
