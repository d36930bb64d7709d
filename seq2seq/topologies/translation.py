"""N vs M: translation with an encoder-decoder (``topology=translate``, the default)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from seq2seq.data.batching import (Batch, ParallelBatches, ResampledParallelBatches, kept_pairs,
                                   make_batch)
from seq2seq.data.corpus import write_lines
from seq2seq.errors import ConfigError
from seq2seq.evaluation.bleu import score_corpus
from seq2seq.evaluation.report import evaluation_report, line_count
from seq2seq.models import count_parameters
from seq2seq.precision import resolve_precision
from seq2seq.recase import Recaser
from seq2seq.tokenization import PAD, TokenizerPair
from seq2seq.training.checkpoint import build_model
from seq2seq.training.distributed import Distributed
from seq2seq.translate import SearchSettings, Translator, comparable_references, translate_ids

log = logging.getLogger(__name__)


def loss_and_perplexity(batches: Iterable[Any], summed: Callable[[Any], Tensor]
                        ) -> tuple[float, float]:
    """Loss per predicted token over ``batches`` (``summed(batch)``: the batch's summed loss),
    without gradients, and the perplexity it gives."""
    total, tokens = 0.0, 0
    with torch.inference_mode():
        for batch in batches:
            total += float(summed(batch))
            tokens += batch.num_tgt_tokens
    loss = total / max(tokens, 1)
    return loss, math.exp(min(loss, 50.0))


@dataclass
class ValidationData:
    src_ids: list[list[int]]
    tgt_ids: list[list[int]]
    references: list[str]


class TranslationObjective:
    """Teacher-forced cross-entropy; validated by loss and by BLEU of searched translations."""

    metrics = ("loss", "ppl", "bleu", "chrf")

    def __init__(self, tokenizers: TokenizerPair, valid: ValidationData,
                 search: SearchSettings, recaser: Recaser | None = None) -> None:
        self.tokenizers, self.valid, self.search = tokenizers, valid, search
        self.recaser = recaser  # stored with the model; validation scores the uncased output

    def loss(self, model: nn.Module, batch: Batch, teacher_forcing: float,
             smoothing: float) -> Tensor:
        # The output layer and the softmax run on real target positions only (no padding), fused
        # with the loss (no [N, V] logits).
        real = batch.tgt_out != PAD
        readout = model(batch.src, batch.src_len, batch.tgt_in, teacher_forcing,
                        output_mask=real, project=False).readout
        return model.decoder.output_loss(readout, batch.tgt_out[real], smoothing)

    def validation_loss(self, model: nn.Module) -> tuple[float, float]:
        """Teacher-forced loss per target token of the validation pairs, and its perplexity."""
        valid = self.valid
        # Length-sorted batches pad less (a quarter less time for this pass on Multi30k's
        # validation split); the loss is a sum over tokens, so the order does not change it.
        order = sorted(range(len(valid.src_ids)),
                       key=lambda i: (len(valid.tgt_ids[i]), len(valid.src_ids[i])))
        batches = (make_batch([valid.src_ids[i] for i in chunk], [valid.tgt_ids[i] for i in chunk],
                              chunk) for chunk in (order[start:start + 64]
                                                   for start in range(0, len(order), 64)))
        return loss_and_perplexity(batches, lambda batch: self.loss(model, batch, 1.0, 0.0))

    def validate(self, model: nn.Module) -> dict[str, float]:
        valid = self.valid
        loss, ppl = self.validation_loss(model)
        hyps = translate_ids(model, valid.src_ids, self.search)
        texts = self.tokenizers.tgt.decode([h.tokens for h in hyps])
        scores = score_corpus(texts, valid.references)
        return {"loss": loss, "ppl": ppl, "bleu": scores.bleu, "chrf": scores.chrf}

    def checkpoint_extras(self) -> dict[str, Any]:
        extras: dict[str, Any] = {"tokenizers": self.tokenizers.state_dict()}
        if self.recaser is not None:
            extras["recaser"] = self.recaser.state_dict()
        return extras


def restrict_output_to_targets(decoder: nn.Module, tgt_ids: list[list[int]],
                               sampling_alpha: float = 0.0) -> None:
    """Restrict the decoder's output layer to the pieces of the training targets when its
    ``model.decoder.output_vocabulary`` is ``training_targets`` (nothing to do for ``all``)."""
    if decoder.output_vocabulary != "training_targets":
        return
    if sampling_alpha > 0:
        raise ConfigError("model.decoder.output_vocabulary=training_targets cannot be combined "
                          "with tokenizer.sampling_alpha > 0: sampled segmentations use pieces "
                          "that the training targets' fixed segmentation does not; set "
                          "model.decoder.output_vocabulary=all")
    decoder.restrict_output(torch.as_tensor([i for ids in tgt_ids for i in ids], dtype=torch.long))
    log.info("output layer: the %d of %d target ids that the training targets use (and the "
             "special ids)", decoder.output_ids.numel(), decoder.vocab_size)


def run(cfg: DictConfig, run_dir: Path, overrides: list[str], distributed: Distributed
        ) -> dict[str, Any]:
    """Train a translation model, translate the test split and write the BLEU report."""
    from seq2seq.pipeline import (  # shared steps
        choose_test_checkpoint, prepare, tokenizer_settings, train_model)

    with distributed.main_first():  # rank 0 fills the corpus and tokenizer caches
        files, tokenizers = prepare(cfg)
    if cfg.model.get("share_embeddings") and not tokenizers.joint:
        raise ConfigError("model.share_embeddings=true: the two sides have separate SentencePiece "
                          "models, so an id means another piece on each side; set "
                          "tokenizer.joint=true")
    train, valid = files.read(files.train), files.read(files.valid)
    limit = cfg.data.get("limit_train")
    src_all, tgt_all = tokenizers.src.encode(train.src[:limit]), tokenizers.tgt.encode(train.tgt[:limit])
    keep = kept_pairs(src_all, tgt_all, cfg.data.max_length)
    src_ids, tgt_ids = [src_all[i] for i in keep], [tgt_all[i] for i in keep]
    log.info("train: %d pairs from %s; valid: %d pairs; vocab %d/%d", len(src_ids), files.root,
             len(valid), tokenizers.src.vocab_size, tokenizers.tgt.vocab_size)
    trainer_cfg = cfg.trainer
    batching = (trainer_cfg.batch_tokens, cfg.seed, trainer_cfg.max_sentences, distributed.rank,
                distributed.world_size)
    tokenizing = tokenizer_settings(cfg.tokenizer)
    recaser = None
    if tokenizing.recase:
        recaser = Recaser.fit(train.tgt)
        log.info("recaser fitted on the %d training targets: %d context entries", len(train.tgt),
                 len(recaser.forms))
    if tokenizing.sampling_alpha > 0:
        src_lines, tgt_lines = [train.src[i] for i in keep], [train.tgt[i] for i in keep]

        def resample(epoch: int) -> tuple[list[list[int]], list[list[int]]]:
            seed = (cfg.seed * 100_003 + epoch) % 2**32  # an epoch's pieces are the same on resume
            return tuple(tokenizer.encode_sampled(lines, tokenizing.sampling_alpha,
                                                  tokenizing.sampling_nbest, seed)
                         for tokenizer, lines in ((tokenizers.src, src_lines),
                                                  (tokenizers.tgt, tgt_lines)))

        log.info("subword sampling of the training pairs each epoch: alpha %g, nbest %d",
                 tokenizing.sampling_alpha, tokenizing.sampling_nbest)
        batches = ResampledParallelBatches(src_ids, tgt_ids, resample, cfg.data.max_length,
                                           *batching)
    else:
        batches = ParallelBatches(src_ids, tgt_ids, *batching)
    n_valid = trainer_cfg.valid_max_sentences or len(valid)
    valid_data = ValidationData(tokenizers.src.encode(valid.src[:n_valid]),
                                tokenizers.tgt.encode(valid.tgt[:n_valid]),
                                comparable_references(valid.tgt[:n_valid],
                                                      tokenizers.tgt.folds_case))
    search = SearchSettings(**{k: v for k, v in cfg.search.items() if not k.startswith("_")})
    valid_search = SearchSettings(**{**search.__dict__, "beam": trainer_cfg.valid_beam})
    model = build_model(cfg.model, tokenizers.src.vocab_size, tokenizers.tgt.vocab_size)
    restrict_output_to_targets(model.decoder, tgt_ids, tokenizing.sampling_alpha)
    objective = TranslationObjective(tokenizers, valid_data, valid_search, recaser)
    state = train_model(cfg, run_dir, model, objective, batches, distributed)
    if not distributed.is_main:
        return {}

    best, averaging = choose_test_checkpoint(cfg, run_dir, model, objective, state)
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
        test.src, comparable_references(test.tgt, translator.writes_lowercase), hypotheses,
        run_dir, str(test.tgt_path), attention=attention,
        references_lowercased=translator.writes_lowercase,
        recased=translator.recaser is not None,
        n_bootstrap=report_cfg.bootstrap_resamples, samples=report_cfg.samples,
        html=report_cfg.html, source_file=str(test.src_path), hypothesis_file=hyp_file.name,
        checkpoint=str(best), beam=translator.search.beam,
        decode_precision=resolve_precision(translator.search.precision, "search.precision"),
        num_params=count_parameters(model), **training_facts(state),
        best_valid_bleu=state.best_bleu, train_pairs=len(src_ids),
        decode_seconds=round(decode_seconds, 2),
        decode_sentences_per_second=round(len(test) / max(decode_seconds, 1e-9), 1),
        learning_curve="learning_curve.png", overrides=list(overrides or []),
        vocab_size=tokenizers.tgt.vocab_size, seed=cfg.seed, data_files=data_files, **averaging,
    )
    log.info("Test BLEU %.2f, chrF %.2f (%s) on %s; report in %s", report["bleu"], report["chrf"],
             report["bleu_signature"], test.tgt_path, run_dir / "report.md")
    return report


def training_facts(state: Any) -> dict[str, Any]:
    """The training figures every report carries."""
    # train_seconds: in training steps (the tok/s figure's time); wall_seconds: validation too.
    return dict(train_seconds=round(state.train_seconds, 1),
                wall_seconds=round(state.wall_seconds, 1), train_tokens=state.train_tokens,
                train_tokens_per_second=round(state.train_tokens / max(state.train_seconds, 1e-9), 1),
                steps=state.step, best_step=state.best_step, stop_reason=state.stop_reason,
                train_precision=state.precision)
