"""Training metrics: a CSV file, TensorBoard when installed, and a learning-curve PNG."""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

COLUMNS = ["step", "epoch", "split", "loss", "ppl", "bleu", "chrf", "lr", "teacher_forcing",
           "tokens_per_second", "elapsed_seconds", "grad_norm", "grad_norm_max"]


class MetricsLog:
    """Appends one row per logged event to ``metrics.csv`` (so resumed runs continue the file)."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = True,
                 extra_columns: tuple[str, ...] = ()) -> None:
        self.path = Path(run_dir) / "metrics.csv"
        new = not self.path.exists()
        columns = COLUMNS + [c for c in extra_columns if c not in COLUMNS]
        if not new:  # a resumed run continues the file with the columns it has
            with open(self.path, newline="", encoding="utf-8") as handle:
                columns = next(csv.reader(handle), columns)
        self._file = open(self.path, "a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._file, fieldnames=columns, extrasaction="ignore")
        if new:
            self._writer.writeheader()
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
            except ImportError:  # TensorBoard is optional
                self._tb = None

    def write(self, **row: Any) -> None:
        self._writer.writerow({k: _fmt(v) for k, v in row.items()})
        self._file.flush()
        if self._tb is not None:
            for key, value in row.items():
                # TensorBoard has every update's gradient norm (``scalar``), not the window's mean
                if key not in ("step", "epoch", "split", "grad_norm", "grad_norm_max") and \
                        isinstance(value, (int, float)):
                    self._tb.add_scalar(f"{row['split']}/{key}", value, row["step"])

    def scalar(self, tag: str, value: float, step: int) -> None:
        """One figure to TensorBoard alone (when installed): what is logged every update."""
        if self._tb is not None:
            self._tb.add_scalar(tag, value, step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def read_metrics(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def plot_learning_curve(csv_path: str | Path, png_path: str | Path, metric: str = "bleu") -> Path:
    """Training and validation loss, and a validation metric (BLEU), against the step."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(csv_path)
    series = lambda split, key: [(int(r["step"]), float(r[key])) for r in rows  # noqa: E731
                                 if r["split"] == split and r.get(key) not in (None, "")]
    fig, (ax_loss, ax_bleu) = plt.subplots(1, 2, figsize=(10, 3.6))
    for split, style in (("train", "-"), ("valid", "o-")):
        points = series(split, "loss")
        if points:
            ax_loss.plot(*zip(*points), style, label=f"{split} loss", markersize=3)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("cross-entropy per token")
    if ax_loss.lines:
        ax_loss.legend()
    points = series("valid", metric)
    if points:
        ax_bleu.plot(*zip(*points), "o-", color="tab:green", markersize=3)
    ax_bleu.set_xlabel("step")
    ax_bleu.set_ylabel(f"validation {'BLEU' if metric == 'bleu' else metric}")
    fig.tight_layout()
    png_path = Path(png_path)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path


@dataclass
class LogWindow:
    """Loss, throughput and the gradients' norm (before clipping) since the last log line."""

    steps: int = 0
    loss_sum: float = 0.0
    tokens: int = 0
    seconds: float = 0.0
    grad_norm_sum: float = 0.0
    grad_norm_max: float = 0.0

    def add(self, loss: float, tokens: int, seconds: float, grad_norm: float = 0.0) -> None:
        self.steps += 1
        self.loss_sum += loss
        self.tokens += tokens
        self.seconds += seconds
        self.grad_norm_sum += grad_norm
        self.grad_norm_max = max(self.grad_norm_max, grad_norm)

    @property
    def grad_norm(self) -> float:
        """The mean over the window's updates."""
        return self.grad_norm_sum / max(self.steps, 1)

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.steps, 1)

    @property
    def rate(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)
