"""``seq2seq-train`` / ``python scripts/train.py``: a Hydra app that trains, evaluates, reports."""

from __future__ import annotations

import errno
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from seq2seq.cli import VERSION, unexpected_error
from seq2seq.config import config_dir
from seq2seq.errors import Seq2SeqError
from seq2seq.evaluation.compare import write_failure
from seq2seq.pipeline import run_training
from seq2seq.training.run_folder import RunFolderError
from seq2seq.training.state import TrainingInterrupted

log = logging.getLogger("seq2seq.train")

# The test figures printed at the end, the first one present being the run's return value.
HEADLINE = ("bleu", "chrf", "slot_f1", "accuracy", "macro_f1", "intent_fidelity", "perplexity",
            "distinct_2")


# A directory, found in a checkout and in an installed wheel alike (seq2seq.config.config_dir),
# rather than Hydra's pkg:// source, which wants an __init__.py inside the YAML-only conf/.
@hydra.main(config_path=str(config_dir()), config_name="train", version_base="1.3")
def train(cfg: DictConfig) -> float:
    """The Hydra app: train, evaluate on the test set, report; returns the headline figure."""
    hydra_cfg = HydraConfig.get()
    try:
        report = run_training(cfg, hydra_cfg.runtime.output_dir,
                              overrides=list(hydra_cfg.overrides.task))
    except TrainingInterrupted as err:
        log.error("%s", err)
        sys.exit(128 + err.signum)  # the shell's convention for death by a signal
    except Exception as err:
        multirun = hydra_cfg.mode == RunMode.MULTIRUN
        if multirun and not isinstance(err, RunFolderError):  # not another run's folder
            # Hydra runs the sweep's other cells and exits 1 at its end; compare lists this one.
            write_failure(Path(hydra_cfg.runtime.output_dir), err, list(hydra_cfg.overrides.task))
        if multirun:
            raise
        if isinstance(err, Seq2SeqError):
            log.error("%s", err)
            sys.exit(2)
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            log.error("no space left on the device: %s", err)  # checkpoints say so themselves
            sys.exit(2)
        sys.exit(unexpected_error(err))
    if not report:  # a torchrun rank other than 0: rank 0 reports
        return float("nan")
    figures = [(k, report[k]) for k in HEADLINE if isinstance(report.get(k), (int, float))]
    print(" ".join(f"{name} {value:.2f}" for name, value in figures)
          + f" on {report['test_set']}; report: {hydra_cfg.runtime.output_dir}/report.md")
    return figures[0][1] if figures else float("nan")  # lets Hydra sweepers optimise it


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: the Hydra app on ``argv`` (default: the command line). ``--version`` is
    answered first, as Hydra's own ``--version`` would print Hydra's version, not ours."""
    args = sys.argv[1:] if argv is None else list(argv)
    if "--version" in args:
        print(VERSION)
        return
    if argv is not None:
        sys.argv = [sys.argv[0], *args]  # Hydra parses sys.argv itself
    train()


if __name__ == "__main__":
    main()
