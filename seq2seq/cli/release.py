"""``seq2seq-release``: a checkpoint for prediction only, without the training state.

    seq2seq-release --checkpoint RUN/checkpoints/best.pt --out model.pt
    seq2seq-release --checkpoint RUN/checkpoints/best.pt --out model.bf16.pt --dtype bf16

The release keeps the weights (the run's moving average where it kept one), the config, the
tokenizers and what the topology's predictor reads (recaser, labels, ...), and drops the optimizer,
scheduler, counters and random states: about a third of a training checkpoint with Adam. It is a
checkpoint like any other for seq2seq-translate, seq2seq-evaluate and seq2seq.predict; training
does not resume from it. bf16 and fp16 store the weights in half the bytes again; they load back
into fp32 parameters (the predictions may then differ slightly from the fp32 model's).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from seq2seq.cli import add_version_option, unexpected_error
from seq2seq.errors import Seq2SeqError
from seq2seq.release import RELEASE_DTYPES, make_release


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="seq2seq-release", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version_option(parser)
    parser.add_argument("--checkpoint", required=True, help="a best.pt or last.pt (or a release)")
    parser.add_argument("--out", required=True, help="the release checkpoint to write")
    parser.add_argument("--dtype", choices=list(RELEASE_DTYPES), default="fp32",
                        help="how the weights are stored (default: fp32)")
    args = parser.parse_args(argv)
    try:
        info = make_release(args.checkpoint, args.out, args.dtype)
    except (Seq2SeqError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # anything else: one line, not a traceback
        return unexpected_error(err)
    before, after = Path(args.checkpoint).stat().st_size, Path(args.out).stat().st_size
    print(f"released {args.checkpoint} ({before / 2**20:.1f} MiB) as {args.out} "
          f"({after / 2**20:.1f} MiB, {info['dtype']} weights, step {info['step']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
