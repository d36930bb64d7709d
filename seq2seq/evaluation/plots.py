"""Figures for reports: BLEU by source length, attention heatmaps, validation curves of runs."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402


def plot_length_buckets(rows: Sequence[dict], png: str | Path) -> Path:
    """Bar chart of BLEU per source-length bucket, with the sentence count on each bar."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    labels = [row["bucket"] for row in rows]
    bars = ax.bar(labels, [row["bleu"] for row in rows], color="tab:blue")
    for bar, row in zip(bars, rows):
        ax.annotate(f"n={row['sentences']}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_xlabel("source length (words)")
    ax.set_ylabel("BLEU")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return Path(png)


def plot_attention(src_pieces: Sequence[str], hyp_pieces: Sequence[str], weights: Tensor,
                   png: str | Path) -> Path:
    """Heatmap of attention weights: output pieces (rows) over source pieces (columns)."""
    rows, cols = len(hyp_pieces), len(src_pieces)
    fig, ax = plt.subplots(figsize=(max(3.0, 0.35 * cols + 1.5), max(2.5, 0.3 * rows + 1.2)))
    ax.imshow(weights[:rows, :cols].float().numpy(), cmap="Greys", vmin=0.0, vmax=1.0,
              aspect="auto")
    ax.set_xticks(range(cols), labels=src_pieces, rotation=90, fontsize=8)
    ax.set_yticks(range(rows), labels=hyp_pieces, fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return Path(png)


def plot_validation_curves(curves: dict[str, list[tuple[float, float]]], png: str | Path,
                           xlabel: str = "training seconds") -> Path:
    """Overlay validation BLEU over time for several runs: {run name: [(x, bleu), ...]}."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, points in curves.items():
        if points:
            ax.plot(*zip(*points), "o-", markersize=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation BLEU")
    if curves:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return Path(png)
