"""The main job behind ``scripts/train.py``: data, tokenizers, model, training, test report."""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from seq2seq.config import build
from omegaconf import DictConfig, OmegaConf

from seq2seq.data.batching import ParallelBatches, filter_pairs
from seq2seq.data.corpus import CorpusFiles, write_lines
from seq2seq.errors import ConfigError
from seq2seq.evaluation.report import evaluation_report, line_count
from seq2seq.models import count_parameters
from seq2seq.tokenization import TokenizerPair, TokenizerSettings, build_tokenizers
from seq2seq.training.checkpoint import build_model
from seq2seq.training.distributed import Distributed, init_distributed, shutdown_distributed
from seq2seq.training.trainer import Trainer, TrainerSettings, ValidationData
from seq2seq.translate import SearchSettings, Translator

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def check_run_dir(run_dir: Path, min_free_mib: int = 100) -> None:
    """Fail before any training time is spent if the run folder is unwritable or the disk full."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"x")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"run folder {run_dir} is not writable: {err}") from None
    free = shutil.disk_usage(run_dir).free // 2**20
    if free < min_free_mib:
        raise ConfigError(f"run folder {run_dir} has {free} MiB free; need at least {min_free_mib}")


def tokenizer_settings(cfg: DictConfig) -> TokenizerSettings:
    options = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items()
               if k != "cache_dir"}
    try:
        return TokenizerSettings(**options)
    except TypeError as err:
        raise ConfigError(f"tokenizer: {err}") from None


def prepare(cfg: DictConfig) -> tuple[CorpusFiles, TokenizerPair]:
    """Make the corpus available and train (or reuse) its tokenizers."""
    data_options = {k: cfg.data[k] for k in ("root", "src_lang", "tgt_lang", "train", "valid",
                                              "test", "download", "download_dir")
                    if k in cfg.data}
    files = build({"_target_": "seq2seq.data.sources.prepare_corpus", **data_options,
                         "generator": cfg.data.get("generator"),
                         "downloader": cfg.data.get("downloader")})
    src_train, tgt_train = files.pair(files.train)
    tokenizers = build_tokenizers([src_train], [tgt_train], tokenizer_settings(cfg.tokenizer),
                                  cfg.tokenizer.cache_dir)
    return files, tokenizers


def run_training(cfg: DictConfig, run_dir: str | Path, overrides: list[str] | None = None
                 ) -> dict[str, Any]:
    """Train, then evaluate the best checkpoint on the test split and write the report.

    Under torchrun, every rank trains its share and rank 0 writes everything; the other ranks
    return an empty dict.
    """
    dist_cfg = cfg.get("distributed") or {}
    distributed = init_distributed(dist_cfg.get("backend", "auto"),
                                   dist_cfg.get("timeout_minutes", 30))
    try:
        return _run_training(cfg, Path(run_dir), overrides, distributed)
    finally:
        shutdown_distributed()


def _run_training(cfg: DictConfig, run_dir: Path, overrides: list[str] | None,
                  distributed: Distributed) -> dict[str, Any]:
    # Hydra names a run folder per process; rank 0's is the job's.
    run_dir = Path(distributed.broadcast(str(run_dir)))
    if distributed.is_main:
        check_run_dir(run_dir)
    seed_everything(cfg.seed)
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    settings: TrainerSettings = build(cfg.trainer)
    search = SearchSettings(**{k: v for k, v in cfg.search.items() if not k.startswith("_")})

    with distributed.main_first():  # rank 0 fills the corpus and tokenizer caches
        files, tokenizers = prepare(cfg)
    train, valid = files.read(files.train), files.read(files.valid)
    limit = cfg.data.get("limit_train")
    src_ids, tgt_ids = filter_pairs(tokenizers.src.encode(train.src[:limit]),
                                    tokenizers.tgt.encode(train.tgt[:limit]),
                                    cfg.data.max_length)
    log.info("train: %d pairs from %s; valid: %d pairs; vocab %d/%d", len(src_ids), files.root,
             len(valid), tokenizers.src.vocab_size, tokenizers.tgt.vocab_size)
    batches = ParallelBatches(src_ids, tgt_ids, settings.batch_tokens, cfg.seed,
                              settings.max_sentences, distributed.rank, distributed.world_size)
    if batches.num_batches(0) == 0:
        raise ConfigError(f"the training set makes fewer batches than the {distributed.world_size} "
                          "ranks: use fewer ranks or a smaller trainer.batch_tokens")
    n_valid = settings.valid_max_sentences or len(valid)
    valid_data = ValidationData(tokenizers.src.encode(valid.src[:n_valid]),
                                tokenizers.tgt.encode(valid.tgt[:n_valid]), valid.tgt[:n_valid])

    model = build_model(cfg.model, tokenizers.src.vocab_size, tokenizers.tgt.vocab_size)
    if distributed.enabled:
        # Same initial weights on every rank (same seed), different dropout masks.
        torch.manual_seed(cfg.seed + distributed.rank)
    config = OmegaConf.to_container(cfg, resolve=True)
    trainer = Trainer(settings, model, tokenizers, run_dir, config, search, distributed)
    last = run_dir / "checkpoints" / "last.pt"
    if cfg.get("resume") and last.exists():
        trainer.resume(last)
    state = trainer.fit(batches, valid_data)
    if not distributed.is_main:
        return {}

    best = run_dir / "checkpoints" / "best.pt"
    translator = Translator.from_checkpoint(best)
    test = files.read(files.test)
    hypotheses = translator.translate(test.src)
    decode_seconds = translator.last_seconds
    hyp_file = write_lines(run_dir / f"test.hyp.{files.tgt_lang}", hypotheses)
    report_cfg = cfg.report
    attention = translator.translate_detailed(test.src[: report_cfg.attention_plots],
                                              return_attention=True)
    data_files = {str(path): line_count(path)
                  for split in (files.train, files.valid, files.test) for path in files.pair(split)}
    report = evaluation_report(
        test.src, test.tgt, hypotheses, run_dir, str(test.tgt_path), attention=attention,
        n_bootstrap=report_cfg.bootstrap_resamples, samples=report_cfg.samples,
        html=report_cfg.html, source_file=str(test.src_path), hypothesis_file=hyp_file.name,
        checkpoint=str(best), beam=translator.search.beam,
        num_params=count_parameters(model), train_seconds=round(state.train_seconds, 1),
        train_tokens=state.train_tokens,
        train_tokens_per_second=round(state.train_tokens / max(state.train_seconds, 1e-9), 1),
        steps=state.step, best_step=state.best_step, best_valid_bleu=state.best_bleu,
        stop_reason=state.stop_reason, train_pairs=len(src_ids),
        decode_seconds=round(decode_seconds, 2),
        decode_sentences_per_second=round(len(test) / max(decode_seconds, 1e-9), 1),
        learning_curve="learning_curve.png", overrides=list(overrides or []),
        vocab_size=tokenizers.tgt.vocab_size, seed=cfg.seed, data_files=data_files,
    )
    log.info("Test BLEU %.2f, chrF %.2f (%s) on %s; report in %s", report["bleu"], report["chrf"],
             report["bleu_signature"], test.tgt_path, run_dir / "report.md")
    return report

