"""``seq2seq-export``: a translation checkpoint as ONNX graphs, for onnxruntime.

    seq2seq-export --checkpoint RUN/checkpoints/best.pt --format onnx --out model_onnx
    seq2seq-translate --checkpoint model_onnx < input.en

The folder holds the encoder and one decoder step as ONNX graphs (dynamic batch and source
length), the SentencePiece models, the recaser and the search settings, and a manifest: it is
self-contained, and seq2seq-translate, seq2seq-evaluate and seq2seq.predict.load_predictor take it
in place of a checkpoint (greedy or beam search, as with the checkpoint). Translate checkpoints
only. Needs the export extra: pip install 'seq2seq[export]'.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from seq2seq.cli import add_version_option, unexpected_error
from seq2seq.errors import Seq2SeqError

FORMATS = ("onnx",)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="seq2seq-export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version_option(parser)
    parser.add_argument("--checkpoint", required=True, help="a translate best.pt, last.pt or release")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="the export format")
    parser.add_argument("--out", required=True,
                        help="the folder to write (new, empty, or an earlier export: replaced)")
    args = parser.parse_args(argv)
    try:
        from seq2seq.export.onnx_export import export_onnx  # torch.onnx: loaded when exporting
        folder = export_onnx(args.checkpoint, args.out)
    except (Seq2SeqError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # anything else: one line, not a traceback
        return unexpected_error(err)
    print(f"exported {args.checkpoint} as {args.format} to {folder}/ "
          f"(try: seq2seq-translate --checkpoint {folder})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
