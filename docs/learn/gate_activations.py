#!/usr/bin/env python
"""Draw the gate activations of a trained GRU or LSTM encoder over one sentence
(docs/learn/gates.md)::

    python docs/learn/gate_activations.py --checkpoint runs/learn/gates/2/checkpoints/best.pt

The encoder's first layer (its forward direction) is re-run step by step with the equations of
``seq2seq/models/cells.py``, keeping each gate's value for every unit and token: a heatmap per
gate (LSTM: input i, forget f, output o; GRU: reset r, update z), its units sorted by their mean
over the sentence and every k-th of them drawn (``--units``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor

from seq2seq.translate import Translator

SENTENCE = "we have two thousand three hundred and forty-one green birds and a big house"


def gates_over_sentence(cell: str, x: Tensor, weights: dict[str, Tensor]) -> dict[str, Tensor]:
    """x: [T, E] embeddings of one sentence. Returns each gate's values [T, H] (the cells.py
    equations, unrolled here to keep the gates, which cell_step does not return)."""
    hidden = weights["weight_hh"].size(1)
    h, c = x.new_zeros(hidden), x.new_zeros(hidden)
    names = ("reset r", "update z") if cell == "gru" else ("input i", "forget f", "output o")
    kept: dict[str, list[Tensor]] = {name: [] for name in names}
    for x_t in x:
        gi = weights["weight_ih"] @ x_t + weights["bias_ih"]
        gh = weights["weight_hh"] @ h + weights["bias_hh"]
        if cell == "gru":
            i_r, i_z, i_n = gi.chunk(3)
            h_r, h_z, h_n = gh.chunk(3)
            r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
            h = (1 - z) * torch.tanh(i_n + r * h_n) + z * h
            values = (r, z)
        else:
            i, f, g, o = (gi + gh).chunk(4)
            i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
            c = f * c + i * torch.tanh(g)
            h = o * torch.tanh(c)
            values = (i, f, o)
        for name, value in zip(names, values):
            kept[name].append(value)
    return {name: torch.stack(v) for name, v in kept.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True,
                        help="a translation run's best.pt (gru or lstm encoder)")
    parser.add_argument("--sentence", default=SENTENCE)
    parser.add_argument("--units", type=int, default=32, help="units drawn per gate (spread over all)")
    parser.add_argument("--out", default=None,
                        help="the PNG (default: gates.png in the run folder)")
    parser.add_argument("--smoke", action="store_true", help="accepted for the docs test; no effect")
    args = parser.parse_args()
    translator = Translator.from_checkpoint(args.checkpoint)
    encoder = translator.model.encoder
    if encoder.cell not in ("gru", "lstm"):
        raise SystemExit(f"{args.checkpoint}: the encoder's cell is {encoder.cell}; gates need gru or lstm")
    weights = {name: getattr(encoder.rnn, f"{name}_l0").detach()
               for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    src = translator.tokenizers.src
    pieces = src.encode_pieces([args.sentence])[0]
    ids = torch.tensor(src.encode([args.sentence])[0])
    with torch.no_grad():
        gates = gates_over_sentence(encoder.cell, encoder.embedding(ids), weights)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(gates), 1, figsize=(7.5, 1.6 * len(gates) + 1.0), sharex=True)
    for ax, (name, values) in zip(axes, gates.items()):
        # units from mostly closed to mostly open; every k-th of them, so a row stays readable
        order = values.mean(0).argsort()[::max(values.size(1) // args.units, 1)]
        image = ax.imshow(values[:, order].T, aspect="auto", cmap="viridis", vmin=0, vmax=1,
                          interpolation="nearest")
        ax.set_ylabel(f"{name}\nunits", fontsize=8)
        ax.set_yticks([])
        print(f"{name:9} mean {values.mean():.3f}; units mostly open (mean > 0.9): "
              f"{int((values.mean(0) > 0.9).sum())}, mostly closed (< 0.1): "
              f"{int((values.mean(0) < 0.1).sum())} of {values.size(1)}")
    axes[-1].set_xticks(range(len(pieces)), pieces, rotation=90, fontsize=8)
    fig.colorbar(image, ax=list(axes), fraction=0.03)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent.parent / "gates.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=75, bbox_inches="tight")
    plt.close(fig)
    print(f"written: {out}")


if __name__ == "__main__":
    main()
