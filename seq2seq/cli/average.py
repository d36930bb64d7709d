"""``seq2seq-average`` / ``python scripts/average.py``: average checkpoints into one.

    python scripts/average.py RUN/checkpoints --last 5 --out RUN/checkpoints/averaged.pt
    python scripts/average.py a.pt b.pt c.pt --out averaged.pt

A folder stands for its step_N.pt files (the last --last of them). Checkpoints of a run trained
with trainer.ema_decay contribute their moving average of the weights. The result translates and
evaluates like any checkpoint; it holds no optimizer state, so training does not resume from it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from seq2seq.cli import add_version_option, unexpected_error
from seq2seq.errors import Seq2SeqError
from seq2seq.training.averaging import average_checkpoints
from seq2seq.training.checkpoint import CheckpointDir, save_checkpoint


def checkpoint_paths(inputs: Sequence[str], last: int) -> list[Path]:
    """Checkpoint files named, or the ``last`` newest step_N.pt of each folder named."""
    paths: list[Path] = []
    for name in inputs:
        path = Path(name)
        paths += CheckpointDir(path).numbered()[-last:] if path.is_dir() else [path]
    return paths


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="seq2seq-average", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version_option(parser)
    parser.add_argument("checkpoints", nargs="+", help="checkpoint files or checkpoint folders")
    parser.add_argument("--last", type=int, default=5, help="step_N.pt files taken from a folder")
    parser.add_argument("--out", required=True, help="the averaged checkpoint to write")
    args = parser.parse_args(argv)
    if args.last < 2:
        parser.error(f"--last {args.last}: expected at least 2")
    try:
        paths = checkpoint_paths(args.checkpoints, args.last)
        save_checkpoint(args.out, average_checkpoints(paths))
    except (Seq2SeqError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # anything else: one line, not a traceback
        return unexpected_error(err)
    print(f"averaged {len(paths)} checkpoints ({', '.join(p.name for p in paths)}) into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
