"""``seq2seq-search-sweep`` / ``python scripts/search_sweep.py``: tune beam width and length
penalty of a translation checkpoint on a validation set.

    python scripts/search_sweep.py --checkpoint RUN/checkpoints/best.pt \\
        --src val.en --ref val.de --beams 5 8 12 --length-penalties 0.6 1.0 1.4 --out sweep.json

Translates ``--src`` once per setting, scores each with sacrebleu against ``--ref`` and prints a
table (detokenized and lowercased BLEU, chrF, output/reference length ratio), best first. Tune on
validation data, then set ``search.beam`` and ``search.length_penalty`` for the test set.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from seq2seq.cli import add_version_option, unexpected_error
from seq2seq.data.corpus import read_lines, write_text_atomic
from seq2seq.device import add_device_option, resolve_device
from seq2seq.errors import Seq2SeqError
from seq2seq.evaluation.bleu import (
    DEFAULT_TOKENIZER,
    add_tokenize_options,
    check_aligned,
    score_corpus,
    tool_tokenizer,
)
from seq2seq.precision import add_precision_option
from seq2seq.training.checkpoint import load_model_checkpoint
from seq2seq.translate import SearchSettings, Translator, comparable_references


def sweep(translator: Translator, sources: Sequence[str], references: Sequence[str],
          beams: Sequence[int], penalties: Sequence[float], tokenize: str = DEFAULT_TOKENIZER
          ) -> list[dict[str, Any]]:
    """One row per (beam, length penalty): its scores on ``references`` (BLEU with sacrebleu's
    ``tokenize``); best BLEU first."""
    base = translator.search
    rows = []
    for beam, penalty in itertools.product(beams, penalties):
        # a search, never a draw: a checkpoint trained with search=sampling would ignore both
        translator.search = SearchSettings(**{**base.__dict__, "beam": beam,
                                              "length_penalty": penalty, "sampling": False})
        hypotheses = translator.translate(sources)
        scores = score_corpus(hypotheses, references, tokenize=tokenize)
        hyp_words = sum(len(h.split()) for h in hypotheses)
        ref_words = sum(len(r.split()) for r in references)
        rows.append({"beam": beam, "length_penalty": penalty, "bleu": round(scores.bleu, 2),
                     "bleu_lowercased": round(scores.bleu_lc, 2),
                     "chrf": round(scores.chrf, 2),
                     "length_ratio": round(hyp_words / max(ref_words, 1), 3),
                     "seconds": round(translator.last_seconds, 1)})
    translator.search = base
    return sorted(rows, key=lambda r: -r["bleu"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seq2seq-search-sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version_option(parser)
    parser.add_argument("--checkpoint", required=True, help="a translation checkpoint")
    parser.add_argument("--src", required=True, help="validation sources, one per line")
    parser.add_argument("--ref", required=True, help="their references, one per line")
    parser.add_argument("--beams", type=int, nargs="+", default=[5], help="beam widths to try")
    parser.add_argument("--length-penalties", type=float, nargs="+", default=[1.0],
                        help="GNMT length penalties (alpha) to try; 0 ranks by raw log-probability")
    add_tokenize_options(parser, "the checkpoint's evaluation.tokenize, else auto")
    parser.add_argument("--out", help="also write the rows to this JSON file")
    add_precision_option(parser)
    add_device_option(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if min(args.beams) < 1:
        parser.error(f"--beams {args.beams}: expected widths >= 1")
    try:
        resolve_device(args.device, "--device")  # a missing GPU: refused before any work
        sources, references = read_lines(Path(args.src)), read_lines(Path(args.ref))
        check_aligned(sources, references, "sources")
        payload = load_model_checkpoint(args.checkpoint)
        tokenize = tool_tokenizer(args.tokenize, args.tgt_lang, payload.get("config"))
        translator = Translator.from_checkpoint(args.checkpoint, payload,
                                                precision=args.precision, device=args.device)
        references = comparable_references(references, translator.writes_lowercase)
        rows = sweep(translator, sources, references, args.beams, args.length_penalties,
                     tokenize)
    except (Seq2SeqError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # anything else: one line, not a traceback
        return unexpected_error(err)
    print(f"{'beam':>4} {'alpha':>5} {'BLEU':>6} {'lc BLEU':>7} {'chrF':>6} {'len':>6} {'s':>6}")
    for r in rows:
        print(f"{r['beam']:>4} {r['length_penalty']:>5} {r['bleu']:>6.2f} {r['bleu_lowercased']:>7.2f} "
              f"{r['chrf']:>6.2f} {r['length_ratio']:>6.3f} {r['seconds']:>6.1f}")
    if args.out:
        write_text_atomic(args.out, json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
