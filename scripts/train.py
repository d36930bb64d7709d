#!/usr/bin/env python
"""Train, evaluate and report: python scripts/train.py [experiment=NAME] [key=value ...]"""

from seq2seq.cli.train import main

if __name__ == "__main__":
    main()
