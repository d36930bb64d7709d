#!/usr/bin/env python
"""Run each reference cell of ``seq2seq/models/cells.py`` (written from its equations) beside the
``torch.nn`` module with the same weights, and print a table: gates, parameters, the largest
difference between their outputs, and the time of a forward pass (docs/learn/cells.md)::

    python docs/learn/cells_check.py
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import torch

from seq2seq.models.cells import GATES, ReferenceLayer
from seq2seq.models.rnn import torch_rnn


def timed(forward: Callable[[], object], repeats: int) -> float:
    """Milliseconds per call of ``forward`` (no gradient), best of ``repeats``."""
    best = float("inf")
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            forward()
            best = min(best, time.perf_counter() - start)
    return 1000 * best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", type=int, default=128, help="input and hidden size")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="small tensors, one repeat")
    args = parser.parse_args()
    if args.smoke:
        args.batch, args.steps, args.size, args.repeats = 4, 5, 16, 1
    torch.manual_seed(0)
    size = args.size
    x = torch.randn(args.batch, args.steps, size)
    lengths = torch.full((args.batch,), args.steps)
    print(f"input [B={args.batch}, T={args.steps}, I={size}], H={size}\n")
    print("| cell | gates | parameters | max abs difference to torch.nn | reference ms | torch.nn ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for cell in ("rnn", "gru", "lstm"):
        ours = ReferenceLayer(cell, size, size)
        theirs = torch_rnn(cell, size, size)
        ours.load_state_dict(theirs.state_dict())  # the same weights, the same layout
        batch = x.size(0)
        h0 = torch.zeros(1, batch, size)
        c0 = torch.zeros(1, batch, size) if cell == "lstm" else None
        with torch.no_grad():
            ours_out = ours(x, lengths, h0, c0)[0]
            theirs_out = theirs(x)[0]
        difference = float((ours_out - theirs_out).abs().max())
        ms_ours = timed(partial(ours, x, lengths, h0, c0), args.repeats)
        ms_theirs = timed(partial(theirs, x), args.repeats)
        params = sum(p.numel() for p in theirs.parameters())
        print(f"| {cell} | {GATES[cell]} | {params:,} | {difference:.1e} | {ms_ours:.1f} | "
              f"{ms_theirs:.1f} |")


if __name__ == "__main__":
    main()
