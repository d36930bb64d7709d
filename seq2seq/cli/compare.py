"""``seq2seq-compare`` / ``python scripts/compare.py RUN_OR_SWEEP_DIR ...``: a leaderboard.

Reads every run's report.json under the given folders (a run folder, or a Hydra multirun folder),
and writes leaderboard.md, leaderboard.csv and validation_bleu.png (validation BLEU of each run
over training time) into --out (default: the only folder given, else the current folder).
The paired bootstrap scores BLEU with sacrebleu's --tokenize (default: the tokenizer of the best
run's report; auto picks by --tgt-lang, else by the best run's target language).
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from seq2seq.cli import add_version_option, unexpected_error
from seq2seq.errors import Seq2SeqError
from seq2seq.evaluation.bleu import add_tokenize_options
from seq2seq.evaluation.compare import find_runs, leaderboard, write_leaderboard


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="seq2seq-compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version_option(parser)
    parser.add_argument("folders", nargs="+", help="run or multirun folders")
    parser.add_argument("--out", default=None, help="where the leaderboard files go")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    add_tokenize_options(parser, "the one the best run was scored with (for the bootstrap test)")
    args = parser.parse_args(argv)
    out = args.out or (args.folders[0] if len(args.folders) == 1 else ".")
    try:
        runs = find_runs(args.folders)
        rows = leaderboard(runs, args.bootstrap, args.tokenize, args.tgt_lang)
        paths = write_leaderboard(rows, runs, out)
    except (Seq2SeqError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # anything else: one line, not a traceback
        return unexpected_error(err)
    print(paths[0].read_text(encoding="utf-8"))
    print(f"written: {', '.join(map(str, paths))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
