#!/usr/bin/env python
"""The vanishing gradient, measured: a plain RNN and two LSTMs (torch's initialisation, and an
open forget gate) on a task whose answer is the first of T tokens (docs/learn/gradients.md).

Each sequence starts with a signal token (one of 4 classes) followed by T-1 noise tokens; the model
(the package's ``RNNEncoder``, one unidirectional layer) reads it and a linear layer classifies its
last hidden state. The script records, for each model and each T:

- the norm of the loss's gradient with respect to the input embedding at every position,
  at initialisation (plotted) and after training (how much the first token can teach the model);
- the norm of all the parameters' gradients before clipping at every update (what ``grad_norm``
  in a run's metrics.csv averages);
- the test accuracy after training (chance: 25 %).

It writes ``gradient_flow.json`` and ``gradient_flow.png`` into ``--out``::

    python docs/learn/gradient_flow.py --out runs/learn/gradient_flow
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from seq2seq.models.encoder import RNNEncoder

CLASSES = 4          # signal tokens 1..4 give the label
NOISE = range(5, 13)  # the T-1 tokens after it carry no information
VOCAB = 13           # 0 is padding
# name: (cell, initial forget-gate bias; None: torch's initialisation)
MODELS = {"rnn": ("rnn", None), "lstm": ("lstm", None), "lstm, forget bias 2": ("lstm", 2.0)}


def make_batch(generator: torch.Generator, batch: int, length: int) -> tuple[Tensor, Tensor]:
    """src: [B, T] a signal token then noise; labels: [B] the signal's class."""
    labels = torch.randint(0, CLASSES, (batch,), generator=generator)
    noise = torch.randint(NOISE.start, NOISE.stop, (batch, length - 1), generator=generator)
    return torch.cat([labels.unsqueeze(1) + 1, noise], dim=1), labels


class FirstTokenClassifier(nn.Module):
    """RNNEncoder (no dropout) and a linear layer on its last hidden state. ``forget_bias``: an
    LSTM's forget-gate bias starts at this value instead of torch's small random one."""

    def __init__(self, cell: str, hidden_size: int, forget_bias: float | None = None) -> None:
        super().__init__()
        self.encoder = RNNEncoder(VOCAB, cell=cell, embedding_dim=16, hidden_size=hidden_size,
                                  num_layers=1, bidirectional=False, dropout=0.0, residual=False,
                                  implementation="torch", word_dropout=0.0)
        if forget_bias is not None:
            # torch.nn.LSTM stacks the gates i, f, g, o: rows H..2H are the forget gate's.
            with torch.no_grad():
                self.encoder.rnn.bias_ih_l0[hidden_size:2 * hidden_size].fill_(forget_bias)
                self.encoder.rnn.bias_hh_l0[hidden_size:2 * hidden_size].zero_()
        self.output = nn.Linear(hidden_size, CLASSES)
        self.embedded: Tensor | None = None
        # Keep the embeddings the RNN reads, to ask for the loss's gradient at each position.
        self.encoder.embedding.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if output.requires_grad:
            output.retain_grad()
        self.embedded = output

    def forward(self, src: Tensor) -> Tensor:
        lengths = torch.full((src.size(0),), src.size(1), dtype=torch.long)
        return self.output(self.encoder(src, lengths).final[-1])  # [B, CLASSES]


def gradient_by_position(model: FirstTokenClassifier, src: Tensor, labels: Tensor) -> list[float]:
    """Mean over the batch of ||dL/dx_t|| for every position t (L: the summed cross-entropy, so
    each sequence's gradient is that of its own loss)."""
    model.zero_grad()
    nn.functional.cross_entropy(model(src), labels, reduction="sum").backward()
    assert model.embedded is not None and model.embedded.grad is not None
    norms = model.embedded.grad.norm(dim=-1).mean(dim=0)  # [T]
    model.zero_grad()
    return [float(x) for x in norms]


def accuracy(model: nn.Module, src: Tensor, labels: Tensor) -> float:
    with torch.no_grad():
        return float((model(src).argmax(-1) == labels).float().mean())


def train(name: str, length: int, updates: int, seed: int, hidden_size: int) -> dict:
    """Train model ``name`` (a key of MODELS) on sequences of ``length``; its figures."""
    cell, forget_bias = MODELS[name]
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = FirstTokenClassifier(cell, hidden_size, forget_bias)
    probe = make_batch(generator, 256, length)   # fixed: the same sequences before and after
    test = make_batch(generator, 1000, length)
    before = gradient_by_position(model, *probe)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.005)
    grad_norms = []
    for _ in range(updates):
        src, labels = make_batch(generator, 64, length)
        loss = nn.functional.cross_entropy(model(src), labels)
        optimizer.zero_grad()
        loss.backward()
        # The norm before clipping, as trainer.clip_norm=1.0 sees it.
        grad_norms.append(float(nn.utils.clip_grad_norm_(model.parameters(), 1.0)))
        optimizer.step()
    return {"model": name, "length": length, "updates": updates,
            "test_accuracy": accuracy(model, *test),
            "input_grad_before": before, "input_grad_after": gradient_by_position(model, *probe),
            "grad_norm": grad_norms}


def plot(results: list[dict], length: int, path: Path) -> None:
    """Left: the gradient by input position at initialisation, for sequences of ``length``.
    Right: test accuracy after training against the sequence length."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_pos, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.3))
    colors = dict(zip(MODELS, ("tab:red", "tab:blue", "tab:green")))
    for r in results:
        if r["length"] == length:
            ax_pos.semilogy(range(1, length + 1), r["input_grad_before"], color=colors[r["model"]],
                            label=r["model"])
    ax_pos.set_xlabel(f"input position t (T = {length}; the answer is at t = 1)")
    ax_pos.set_ylabel("||dL/dx_t|| at initialisation")
    ax_pos.legend(fontsize=7)
    for name, color in colors.items():
        points = sorted((r["length"], 100 * r["test_accuracy"]) for r in results if r["model"] == name)
        ax_acc.plot(*zip(*points), "o-", color=color, label=name)
    ax_acc.axhline(100 / CLASSES, color="gray", linestyle="--", linewidth=1, label="chance")
    ax_acc.set_xscale("log", base=2)
    lengths = sorted({r["length"] for r in results})
    ax_acc.set_xticks(lengths, [str(n) for n in lengths])
    ax_acc.set_xlabel("sequence length T")
    ax_acc.set_ylabel("test accuracy after training (%)")
    ax_acc.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/learn/gradient_flow", help="folder for the JSON and PNG")
    parser.add_argument("--lengths", type=int, nargs="+", default=[10, 20, 40, 80])
    parser.add_argument("--updates", type=int, default=600)
    parser.add_argument("--hidden-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="a few updates on short sequences")
    args = parser.parse_args()
    if args.smoke:
        args.lengths, args.updates = [5, 10], 5
    torch.set_num_threads(1)  # tiny matrices: one thread is faster than several
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = []
    print("| model | T | test accuracy | ‖dL/dx_1‖ at init | ‖dL/dx_1‖ / ‖dL/dx_T‖ at init | "
          "grad_norm median / max |")
    print("|---|---:|---:|---:|---:|---:|")
    for length in args.lengths:
        for name in MODELS:
            r = train(name, length, args.updates, args.seed, args.hidden_size)
            results.append(r)
            first, last = r["input_grad_before"][0], r["input_grad_before"][-1]
            norms = sorted(r["grad_norm"])
            print(f"| {name} | {length} | {100 * r['test_accuracy']:.1f} % | {first:.1e} | "
                  f"{first / last:.1e} | {norms[len(norms) // 2]:.2f} / {norms[-1]:.2f} |")
    (out / "gradient_flow.json").write_text(json.dumps(
        {"updates": args.updates, "hidden_size": args.hidden_size, "seed": args.seed,
         "seconds": round(time.perf_counter() - start, 1), "results": results}), encoding="utf-8")
    plot(results, max(args.lengths), out / "gradient_flow.png")
    print(f"written: {out / 'gradient_flow.json'}, {out / 'gradient_flow.png'} "
          f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
