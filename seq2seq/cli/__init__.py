"""Command-line entry points (also installed as console scripts seq2seq-train, ...)."""

from pathlib import Path

# The config tree lives beside the package in a source checkout (`pip install -e .`).
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
