"""N vs M: translation with an encoder-decoder (``topology=translate``, the default).

The model is ``conf/model/encoder_decoder.yaml``; its predictor is ``seq2seq.translate.Translator``;
the report scores BLEU, chrF and TER with sacrebleu (``evaluation/report.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional, Sequence, cast

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from seq2seq.config import build
from seq2seq.data.batching import Batch, ParallelBatches, ResampledParallelBatches, kept_pairs, make_batch
from seq2seq.data.corpus import CorpusFiles, read_aligned, read_lines, write_lines
from seq2seq.errors import ConfigError
from seq2seq.evaluation.bleu import score_corpus
from seq2seq.evaluation.report import evaluation_report, line_count
from seq2seq.models import count_parameters
from seq2seq.models.decoder import RNNDecoder
from seq2seq.models.encoder_decoder import EncoderDecoder
from seq2seq.precision import resolve_precision
from seq2seq.recase import Recaser
from seq2seq.tokenization import PAD, TokenizerPair, TokenizerSettings, build_tokenizers
from seq2seq.topologies.base import EvaluationRequest, PredictOptions, TrainingSetup, loss_and_perplexity
from seq2seq.training.distributed import Distributed
from seq2seq.translate import (
    SearchSettings,
    Translator,
    build_translation_model,
    comparable_references,
    translate_ids,
)

log = logging.getLogger(__name__)


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
        return cast(EncoderDecoder, model).decoder.output_loss(readout, batch.tgt_out[real],
                                                               smoothing)

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


def restrict_output_to_targets(decoder: RNNDecoder, tgt_ids: list[list[int]],
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
    kept = decoder.restrict_output(torch.as_tensor([i for ids in tgt_ids for i in ids],
                                                   dtype=torch.long))
    log.info("output layer: the %d of %d target ids that the training targets use (and the "
             "special ids)", kept.numel(), decoder.vocab_size)


def corpus_and_tokenizers(cfg: DictConfig) -> tuple[CorpusFiles, TokenizerPair, TokenizerSettings]:
    """Make the corpus available (``data``) and train (or reuse) its tokenizers (``tokenizer``)."""
    files: CorpusFiles = build(cfg.data).files()
    settings: TokenizerSettings = build(cfg.tokenizer)
    src_train, tgt_train = files.pair(files.train)
    tokenizers = build_tokenizers([src_train], [tgt_train], settings, settings.cache_dir)
    return files, tokenizers, settings


def training_batches(cfg: DictConfig, src_lines: list[str], tgt_lines: list[str],
                     tokenizers: TokenizerPair, settings: TokenizerSettings,
                     distributed: Distributed) -> ParallelBatches:
    """This rank's epochs of training batches: the pairs within ``data.max_length`` pieces, with
    a fresh sampled segmentation each epoch when ``tokenizer.sampling_alpha`` > 0."""
    src_all, tgt_all = tokenizers.src.encode(src_lines), tokenizers.tgt.encode(tgt_lines)
    keep = kept_pairs(src_all, tgt_all, cfg.data.max_length)
    src_ids, tgt_ids = [src_all[i] for i in keep], [tgt_all[i] for i in keep]
    batching = (cfg.trainer.batch_tokens, cfg.seed, cfg.trainer.max_sentences, distributed.rank,
                distributed.world_size)
    if settings.sampling_alpha <= 0:
        return ParallelBatches(src_ids, tgt_ids, *batching)
    kept_src, kept_tgt = [src_lines[i] for i in keep], [tgt_lines[i] for i in keep]

    def resample(epoch: int) -> tuple[list[list[int]], list[list[int]]]:
        seed = (cfg.seed * 100_003 + epoch) % 2**32  # an epoch's pieces are the same on resume
        return (tokenizers.src.encode_sampled(kept_src, settings.sampling_alpha,
                                              settings.sampling_nbest, seed),
                tokenizers.tgt.encode_sampled(kept_tgt, settings.sampling_alpha,
                                              settings.sampling_nbest, seed))

    log.info("subword sampling of the training pairs each epoch: alpha %g, nbest %d",
             settings.sampling_alpha, settings.sampling_nbest)
    return ResampledParallelBatches(src_ids, tgt_ids, resample, cfg.data.max_length, *batching)


class Translate:
    """N vs M: a sentence in, a sentence out."""

    name: ClassVar[str] = "translate"

    def setup(self, cfg: DictConfig, distributed: Distributed) -> TrainingSetup:
        with distributed.main_first():  # rank 0 fills the corpus and tokenizer caches
            files, tokenizers, settings = corpus_and_tokenizers(cfg)
        if cfg.model.get("share_embeddings") and not tokenizers.joint:
            raise ConfigError("model.share_embeddings=true: the two sides have separate "
                              "SentencePiece models, so an id means another piece on each side; "
                              "set tokenizer.joint=true")
        train, valid = files.read(files.train), files.read(files.valid)
        limit = cfg.data.get("limit_train")
        batches = training_batches(cfg, train.src[:limit], train.tgt[:limit], tokenizers, settings,
                                   distributed)
        log.info("train: %d pairs from %s; valid: %d pairs; vocab %d/%d", len(batches.src),
                 files.root, len(valid), tokenizers.src.vocab_size, tokenizers.tgt.vocab_size)
        recaser = None
        if settings.recase:
            recaser = Recaser.fit(train.tgt)
            log.info("recaser fitted on the %d training targets: %d context entries",
                     len(train.tgt), len(recaser.forms))
        n_valid = cfg.trainer.valid_max_sentences or len(valid)
        valid_data = ValidationData(tokenizers.src.encode(valid.src[:n_valid]),
                                    tokenizers.tgt.encode(valid.tgt[:n_valid]),
                                    comparable_references(valid.tgt[:n_valid],
                                                          tokenizers.tgt.folds_case))
        search: SearchSettings = build(cfg.search, beam=cfg.trainer.valid_beam)
        model = build_translation_model(cfg.model, tokenizers.src.vocab_size,
                                        tokenizers.tgt.vocab_size)
        restrict_output_to_targets(model.decoder, batches.tgt, settings.sampling_alpha)
        objective = TranslationObjective(tokenizers, valid_data, search, recaser)
        data_files = {str(path): line_count(path)
                      for split in (files.train, files.valid, files.test)
                      for path in files.pair(split)}
        facts = {"train_pairs": len(batches.src), "vocab_size": tokenizers.tgt.vocab_size,
                 "data_files": data_files}
        return TrainingSetup(model, objective, batches, facts, files)

    def load_predictor(self, payload: dict[str, Any], paths: Sequence[str | Path],
                       options: PredictOptions) -> Translator:
        return Translator.from_checkpoints(
            paths, payload, beam=options.beam, batch_size=options.batch_size,
            length_penalty=options.length_penalty, precision=options.precision)

    def test_report(self, cfg: DictConfig, predictor: Translator, data: CorpusFiles, run_dir: Path,
                    facts: dict[str, Any]) -> dict[str, Any]:
        test = data.read(data.test)
        hypotheses = predictor.translate(test.src)
        decode_seconds = predictor.last_seconds
        hyp_file = write_lines(run_dir / f"test.hyp.{data.tgt_lang}", hypotheses)
        attention = predictor.translate_detailed(test.src[: cfg.report.attention_plots],
                                                 return_attention=True)
        report = evaluation_report(
            test.src, comparable_references(test.tgt, predictor.writes_lowercase), hypotheses,
            run_dir, str(test.tgt_path), attention=attention,
            references_lowercased=predictor.writes_lowercase,
            recased=predictor.recaser is not None,
            n_bootstrap=cfg.report.bootstrap_resamples, samples=cfg.report.samples,
            html=cfg.report.html, source_file=str(test.src_path), hypothesis_file=hyp_file.name,
            beam=predictor.search.beam,
            decode_precision=resolve_precision(predictor.search.precision, "search.precision"),
            decode_seconds=round(decode_seconds, 2),
            decode_sentences_per_second=round(len(test) / max(decode_seconds, 1e-9), 1),
            **facts)
        log.info("Test BLEU %.2f, chrF %.2f (%s) on %s; report in %s", report["bleu"],
                 report["chrf"], report["bleu_signature"], test.tgt_path, run_dir / "report.md")
        return report

    def evaluate(self, request: EvaluationRequest, predictor: Optional[Translator]
                 ) -> dict[str, Any]:
        references = read_lines(request.ref, allow_empty=True)
        sources = (read_aligned(request.src, references, "--src") if request.src
                   else [""] * len(references))
        facts: dict[str, Any] = {"data_files": {p: line_count(p) for p in
                                                (request.src, request.ref, request.hyp) if p}}
        attention: list = []
        if predictor is not None:
            references = comparable_references(references, predictor.writes_lowercase)
            hypotheses = predictor.translate(sources)
            decode_seconds = predictor.last_seconds  # before the attention pass below resets it
            attention = predictor.translate_detailed(sources[: request.attention_plots],
                                                     return_attention=True)
            facts.update(checkpoint=" + ".join(request.checkpoints), beam=predictor.search.beam,
                         length_penalty=predictor.search.length_penalty,
                         decode_precision=resolve_precision(predictor.search.precision),
                         num_params=count_parameters(predictor.model),
                         decode_seconds=round(decode_seconds, 2),
                         references_lowercased=predictor.writes_lowercase,
                         recased=predictor.recaser is not None)
            facts["hypothesis_file"] = str(write_lines(request.report_dir / "hypotheses.txt",
                                                       hypotheses))
        else:
            if request.hyp is None:
                raise ConfigError("give either --checkpoint with --src, or --hyp")
            hypotheses = read_aligned(request.hyp, references, "--hyp")
            facts["hypothesis_file"] = request.hyp
        baseline = None
        if request.baseline and request.baseline.endswith(".pt"):
            options = request.options
            baseline = Translator.from_checkpoint(
                request.baseline, beam=options.beam, length_penalty=options.length_penalty,
                precision=options.precision).translate(sources)
        elif request.baseline:
            baseline = read_aligned(request.baseline, references, "--baseline")
        return evaluation_report(
            sources, references, hypotheses, request.report_dir, request.ref, baseline=baseline,
            baseline_name=request.baseline or "baseline", attention=attention,
            n_bootstrap=request.bootstrap, html=request.html, **facts)

    def summary(self, report: dict[str, Any]) -> list[str]:
        lines = []
        for name, key in (("BLEU", "bleu"), ("chrF", "chrf"), ("TER", "ter")):
            interval = report.get(f"{key}_ci")
            ci = f" (95% CI {interval[0]:.2f}-{interval[1]:.2f})" if interval else ""
            lines.append(f"{name} = {report[key]:.2f}{ci}  {report[f'{key}_signature']}")
        lines.append(f"BLEU (lowercased) = {report['bleu_lc']:.2f}  {report['bleu_lc_signature']}")
        for result in report.get("baseline", {}).get("results", []):
            lines.append(f"vs baseline: {result['metric']} {result['system']:.2f} vs "
                         f"{result['baseline']:.2f}, p = {result['p_value']:.4f}"
                         f"{' (significant)' if result['significant'] else ''}")
        return lines

