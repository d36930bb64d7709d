"""``seq2seq-train`` / ``python scripts/train.py``: a Hydra app that trains, evaluates, reports."""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from seq2seq.cli import CONF_DIR
from seq2seq.errors import Seq2SeqError
from seq2seq.pipeline import run_training
from seq2seq.training.trainer import TrainingInterrupted

log = logging.getLogger("seq2seq.train")

# The test figures printed at the end, the first one present being the run's return value.
HEADLINE = ("bleu", "chrf", "slot_f1", "accuracy", "macro_f1", "intent_fidelity", "perplexity",
            "distinct_2")


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    try:
        report = run_training(cfg, hydra_cfg.runtime.output_dir,
                              overrides=list(hydra_cfg.overrides.task))
    except TrainingInterrupted as err:
        log.error("%s", err)
        sys.exit(128 + err.signum)  # the shell's convention for death by a signal
    except Seq2SeqError as err:
        log.error("%s", err)
        sys.exit(2)
    if not report:  # a torchrun rank other than 0: rank 0 reports
        return float("nan")
    figures = [(k, report[k]) for k in HEADLINE if isinstance(report.get(k), (int, float))]
    print(" ".join(f"{name} {value:.2f}" for name, value in figures)
          + f" on {report['test_set']}; report: {hydra_cfg.runtime.output_dir}/report.md")
    return figures[0][1] if figures else float("nan")  # lets Hydra sweepers optimise it


if __name__ == "__main__":
    main()
