"""``seq2seq-serve``: a checkpoint behind an HTTP API and a web page (``pip install 'seq2seq[serve]'``).

    seq2seq-serve --checkpoint runs/m30k/checkpoints/best.pt --port 8000

POST /translate {"text": ["a line", ...], "beam": 5} answers {"translations": [...]}: exactly the
lines seq2seq-translate prints for the same input (a class, tags or an utterance for the other
topologies); POST /analyze adds the pieces and attention (or the words and tags) the page at /
draws; GET /health describes the model; /docs shows the API. Concurrent requests are batched
together (--batch-wait-ms, --max-batch-lines); one request holds at most --max-lines lines of
--max-chars characters, or is answered 413.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from seq2seq import runtime
from seq2seq.cli import add_version_option, unexpected_error
from seq2seq.errors import Seq2SeqError
from seq2seq.precision import add_precision_option
from seq2seq.topologies.base import PredictOptions


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="seq2seq-serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version_option(parser)
    parser.add_argument("--checkpoint", required=True, nargs="+",
                        help="a best.pt or last.pt file; several translation checkpoints of the "
                             "same vocabulary decode as an ensemble")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument("--max-lines", type=int, default=64, help="lines per request at most")
    parser.add_argument("--max-chars", type=int, default=1000, help="characters per line at most")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0,
                        help="how long a request waits for others to share its batch")
    parser.add_argument("--max-batch-lines", type=int, default=64,
                        help="lines per batch at most: a full batch runs without waiting")
    parser.add_argument("--beam", type=int, default=None,
                        help="default beam width (1 = greedy); default: the checkpoint's search.beam")
    parser.add_argument("--length-penalty", type=float, default=None,
                        help="GNMT length penalty alpha; default: the checkpoint's search.length_penalty")
    add_precision_option(parser)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="sentences per model batch within a batch of requests")
    parser.add_argument("--temperature", type=float, default=None,
                        help="generate: sampling temperature (0 = greedy)")
    parser.add_argument("--top-k", type=int, default=None, help="generate: sample among the top k")
    parser.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (default: auto)")
    parser.add_argument("--num-threads", default=None,
                        help="CPU threads of the model: a number, or auto (this process's share of "
                             "the cores); default: torch's own")
    parser.add_argument("--log-level", default="info",
                        choices=["critical", "error", "warning", "info", "debug"],
                        help="the server's log level")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Load the checkpoint and serve it until interrupted."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)
    try:
        import uvicorn

        from seq2seq.serve.app import Limits, create_app
    except ImportError as err:
        print(f"error: seq2seq-serve needs the serve extra ({err.name} is missing): "
              "pip install 'seq2seq[serve]'", file=sys.stderr)
        return 2
    from seq2seq.serve.model import ServedModel

    try:
        runtime.apply_num_threads(args.num_threads)
        limits = Limits(args.max_lines, args.max_chars)
        model = ServedModel.load(args.checkpoint, PredictOptions(
            beam=args.beam, batch_size=args.batch_size, length_penalty=args.length_penalty,
            precision=args.precision, temperature=args.temperature, top_k=args.top_k,
            device=args.device))
        app = create_app(model, limits, args.batch_wait_ms, args.max_batch_lines)
    except (Seq2SeqError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # anything else: one line, not a traceback
        return unexpected_error(err)
    print(f"serving {model.topology} model {model.name} on http://{args.host}:{args.port}/",
          file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
