"""Figures for reports: BLEU by source length, attention heatmaps, validation curves of runs,
confusion matrices."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402


def _save(fig, png: str | Path) -> Path:
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return Path(png)


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
    return _save(fig, png)


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
    return _save(fig, png)


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
    return _save(fig, png)


def plot_confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str], png: str | Path) -> Path:
    """Confusion matrix with counts: gold classes (rows) against predicted ones (columns)."""
    size = max(4.0, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                        color="white" if count > peak / 2 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, png)
