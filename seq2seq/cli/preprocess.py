"""``seq2seq-preprocess``: fill the caches a training run reads, before it (fairseq-preprocess).

Takes the same Hydra overrides as ``seq2seq-train`` and does what a run's first steps would: make the
corpus available, train (or reuse) the SentencePiece models, and encode the training split once
into the binarized, memory-mapped arrays of the tokenizer cache (``seq2seq/data/binarized.py``),
on every core. A run with the same overrides then starts from the caches in about a second:

    seq2seq-preprocess experiment=multi30k_en_de data.root=data/multi30k
    seq2seq-train experiment=multi30k_en_de data.root=data/multi30k
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import hydra
from omegaconf import DictConfig

from seq2seq.cli import VERSION, unexpected_error
from seq2seq.config import build, config_dir
from seq2seq.errors import ConfigError, Seq2SeqError

log = logging.getLogger("seq2seq.preprocess")

# No run folder: the caches are the output; the log goes to the terminal only.
HYDRA_DEFAULTS = ("hydra.output_subdir=null", "hydra.run.dir=.", "hydra/job_logging=stdout",
                  "hydra/hydra_logging=none")


def preprocess(cfg: DictConfig) -> dict:
    """Fill the corpus, SentencePiece and binarized caches for ``cfg``; returns the binarized
    split's metadata (``meta.json``)."""
    from seq2seq.topologies.translate import (
        Translate,
        binarize_training_split,
        corpus_and_tokenizers,
        uses_binarized,
    )

    if not isinstance(build(cfg.topology), Translate):
        raise ConfigError(f"seq2seq-preprocess binarizes translation corpora (topology=translate), "
                          f"not topology {cfg.topology.get('_target_')}")
    files, tokenizers, settings = corpus_and_tokenizers(cfg)
    if not uses_binarized(cfg, settings):
        raise ConfigError("nothing to binarize: data.binarize=false or tokenizer.sampling_alpha > 0 "
                          "(subword sampling encodes the training text every epoch)")
    split = binarize_training_split(cfg, files, tokenizers, settings)
    return dict(split.meta, folder=str(split.folder))


@hydra.main(config_path=str(config_dir()), config_name="train", version_base="1.3")
def run(cfg: DictConfig) -> None:
    """The Hydra app: preprocess, print where the result is."""
    try:
        meta = preprocess(cfg)
    except Seq2SeqError as err:
        log.error("%s", err)
        sys.exit(2)
    except Exception as err:
        sys.exit(unexpected_error(err))
    dropped = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in
                        meta["dropped"].items())
    print(f"{meta['pairs']} training pairs of {meta['lines']} lines (dropped: {dropped}) in "
          f"{meta['folder']}")


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: the Hydra app on ``argv`` (default: the command line)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if "--version" in args:
        print(VERSION)
        return
    given = {arg.split("=", 1)[0] for arg in args}
    sys.argv = [sys.argv[0], *[d for d in HYDRA_DEFAULTS if d.split("=", 1)[0] not in given], *args]
    run()


if __name__ == "__main__":
    main()
