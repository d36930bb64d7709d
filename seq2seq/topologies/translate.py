"""N vs M: translation with an encoder-decoder (``topology=translate``, the default).

The model is ``conf/model/encoder_decoder.yaml``; its predictor is ``seq2seq.translate.Translator``;
the report scores BLEU, chrF and TER with sacrebleu (``evaluation/report.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, ClassVar, Optional, Sequence, cast

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from seq2seq.config import build
from seq2seq.data.batching import (
    Batch,
    BucketedBatches,
    PairFilter,
    ParallelBatches,
    ResampledParallelBatches,
    make_batch,
)
from seq2seq.data.binarized import BinarizedCorpus, MappedParallelBatches, binarized_training_split
from seq2seq.data.corpus import CorpusFiles, iter_lines, read_aligned, read_lines, write_lines
from seq2seq.device import model_device
from seq2seq.errors import ConfigError
from seq2seq.evaluation.bleu import DEFAULT_TOKENIZER, bleu_tokenizer, score_corpus, stored_tokenize
from seq2seq.evaluation.report import evaluation_report, line_count
from seq2seq.models import count_parameters
from seq2seq.models.decoder import RNNDecoder
from seq2seq.models.encoder_decoder import EncoderDecoder
from seq2seq.models.pretrained import load_pretrained_embeddings
from seq2seq.precision import resolve_precision
from seq2seq.recase import Recaser
from seq2seq.runtime import available_cores
from seq2seq.tokenization import PAD, TokenizerPair, TokenizerSettings, build_tokenizers
from seq2seq.topologies.base import EvaluationRequest, PredictOptions, TrainingSetup, loss_and_perplexity
from seq2seq.training.distributed import Distributed
from seq2seq.training.transfer import checkpoint_tokenizers
from seq2seq.translate import (
    SearchSettings,
    Translator,
    build_translation_model,
    comparable_references,
    translate_ids,
)

log = logging.getLogger(__name__)

# The training targets the recaser is fitted on: all of Multi30k's 29,000; a larger corpus's first
# this many (its counts then cover the common words, in bounded memory and time).
RECASER_LINES = 100_000


@dataclass
class ValidationData:
    src_ids: list[list[int]]
    tgt_ids: list[list[int]]
    references: list[str]


class TranslationObjective:
    """Teacher-forced cross-entropy; validated by loss and by BLEU of searched translations
    (sacrebleu's tokenizer ``bleu_tokenize``, as the test report's)."""

    metrics = ("loss", "ppl", "bleu", "chrf")

    def __init__(self, tokenizers: TokenizerPair, valid: ValidationData,
                 search: SearchSettings, recaser: Recaser | None = None,
                 bleu_tokenize: str = DEFAULT_TOKENIZER) -> None:
        self.tokenizers, self.valid, self.search = tokenizers, valid, search
        self.recaser = recaser  # stored with the model; validation scores the uncased output
        self.bleu_tokenize = bleu_tokenize

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
        return loss_and_perplexity(batches, lambda batch: self.loss(model, batch, 1.0, 0.0),
                                   model_device(model))

    def validate(self, model: nn.Module) -> dict[str, float]:
        valid = self.valid
        loss, ppl = self.validation_loss(model)
        hyps = translate_ids(model, valid.src_ids, self.search)
        texts = self.tokenizers.tgt.decode([h.tokens for h in hyps])
        scores = score_corpus(texts, valid.references, tokenize=self.bleu_tokenize)
        return {"loss": loss, "ppl": ppl, "bleu": scores.bleu, "chrf": scores.chrf}

    def checkpoint_extras(self) -> dict[str, Any]:
        extras: dict[str, Any] = {"tokenizers": self.tokenizers.state_dict()}
        if self.recaser is not None:
            extras["recaser"] = self.recaser.state_dict()
        return extras


def restrict_output_to_targets(decoder: RNNDecoder, tgt_ids: Sequence[Sequence[int]] | np.ndarray,
                               sampling_alpha: float = 0.0) -> None:
    """Restrict the decoder's output layer to the pieces of the training targets (``tgt_ids``: their
    id lists, or an array of the ids they use) when its ``model.decoder.output_vocabulary`` is
    ``training_targets`` (nothing to do for ``all``)."""
    if decoder.output_vocabulary != "training_targets":
        return
    if sampling_alpha > 0:
        raise ConfigError("model.decoder.output_vocabulary=training_targets cannot be combined "
                          "with tokenizer.sampling_alpha > 0: sampled segmentations use pieces "
                          "that the training targets' fixed segmentation does not; set "
                          "model.decoder.output_vocabulary=all")
    ids = torch.from_numpy(tgt_ids.astype(np.int64)) if isinstance(tgt_ids, np.ndarray) else \
        torch.as_tensor([i for seq in tgt_ids for i in seq], dtype=torch.long)
    kept = decoder.restrict_output(ids)
    log.info("output layer: the %d of %d target ids that the training targets use (and the "
             "special ids)", kept.numel(), decoder.vocab_size)


def corpus_and_tokenizers(cfg: DictConfig) -> tuple[CorpusFiles, TokenizerPair, TokenizerSettings]:
    """Make the corpus available (``data``) and train (or reuse) its tokenizers (``tokenizer``);
    a run with ``init_from`` takes the tokenizers of that checkpoint (resumed too: its weights
    were trained on those pieces, not on tokenizers of its own data)."""
    files: CorpusFiles = build(cfg.data).files()
    settings: TokenizerSettings = build(cfg.tokenizer)
    src_train, tgt_train = files.pair(files.train)
    if cfg.get("init_from"):
        tokenizers = checkpoint_tokenizers(cfg.init_from)
        log.info("tokenizers of %s (init_from)", cfg.init_from)
    else:
        tokenizers = build_tokenizers([src_train], [tgt_train], settings, settings.cache_dir)
    return files, tokenizers, settings


def pair_filter(cfg: DictConfig) -> PairFilter:
    """The training pairs kept (``data.max_length``, ``data.max_length_ratio``, ``data.limit_train``)."""
    return PairFilter(int(cfg.data.max_length), cfg.data.get("max_length_ratio"),
                      cfg.data.get("limit_train"))


def uses_binarized(cfg: DictConfig, settings: TokenizerSettings) -> bool:
    """Whether the training split is binarized and mapped (``data.binarize``), which needs one
    fixed segmentation: subword sampling re-encodes the text every epoch."""
    return bool(cfg.data.get("binarize", True)) and settings.sampling_alpha <= 0


def binarize_training_split(cfg: DictConfig, files: CorpusFiles, tokenizers: TokenizerPair,
                            settings: TokenizerSettings, progress: bool = True) -> BinarizedCorpus:
    """The training split of ``files`` encoded and filtered once into the tokenizer cache
    (``seq2seq/data/binarized.py``), on every core, then memory-mapped."""
    src_path, tgt_path = files.pair(files.train)
    # A pool costs a fork and a model load per worker: worth it from a few chunks on.
    workers = available_cores() if src_path.stat().st_size > 4 << 20 else 1
    return binarized_training_split(
        src_path, tgt_path, tokenizers.src.model_proto, tokenizers.tgt.model_proto,
        (tokenizers.src.vocab_size, tokenizers.tgt.vocab_size), pair_filter(cfg),
        Path(settings.cache_dir), workers, progress)


@dataclass
class TrainingData:
    """This rank's training batches and what the run needs to know of the training pairs."""

    batches: BucketedBatches
    target_ids: Sequence[Sequence[int]] | np.ndarray  # for restrict_output_to_targets
    facts: dict[str, Any]                             # for the report


def training_data(cfg: DictConfig, files: CorpusFiles, tokenizers: TokenizerPair,
                  settings: TokenizerSettings, distributed: Distributed,
                  corpus: Optional[BinarizedCorpus] = None) -> TrainingData:
    """This rank's epochs of training batches: from the binarized split ``corpus`` when given,
    else encoded into lists (``training_batches``)."""
    batching = (cfg.trainer.batch_tokens, cfg.seed, cfg.trainer.max_sentences, distributed.rank,
                distributed.world_size)
    if corpus is not None:
        meta = corpus.meta
        return TrainingData(MappedParallelBatches(corpus, *batching), corpus.target_ids(),
                            {"train_pairs": len(corpus), "train_lines": meta["lines"],
                             "train_dropped": meta["dropped"]})
    train = files.read(files.train)
    limit = cfg.data.get("limit_train")
    batches, counts = training_batches(cfg, train.src[:limit], train.tgt[:limit], tokenizers,
                                       settings, distributed)
    return TrainingData(batches, batches.tgt, {"train_pairs": len(batches.src),
                                               "train_lines": len(train.src[:limit]),
                                               "train_dropped": counts})


def training_batches(cfg: DictConfig, src_lines: list[str], tgt_lines: list[str],
                     tokenizers: TokenizerPair, settings: TokenizerSettings,
                     distributed: Distributed) -> tuple[ParallelBatches, dict[str, int]]:
    """This rank's epochs of training batches: the pairs ``pair_filter`` keeps, with a fresh
    sampled segmentation each epoch when ``tokenizer.sampling_alpha`` > 0; and the counts of the
    pairs dropped."""
    src_all, tgt_all = tokenizers.src.encode(src_lines), tokenizers.tgt.encode(tgt_lines)
    kept_by = pair_filter(cfg)
    keep, counts = kept_by.kept_indices(src_all, tgt_all)
    log.info("%s", kept_by.describe(counts, len(keep)))
    src_ids, tgt_ids = [src_all[i] for i in keep], [tgt_all[i] for i in keep]
    batching = (cfg.trainer.batch_tokens, cfg.seed, cfg.trainer.max_sentences, distributed.rank,
                distributed.world_size)
    if settings.sampling_alpha <= 0:
        return ParallelBatches(src_ids, tgt_ids, *batching), counts
    kept_src, kept_tgt = [src_lines[i] for i in keep], [tgt_lines[i] for i in keep]

    def resample(epoch: int) -> tuple[list[list[int]], list[list[int]]]:
        seed = (cfg.seed * 100_003 + epoch) % 2**32  # an epoch's pieces are the same on resume
        return (tokenizers.src.encode_sampled(kept_src, settings.sampling_alpha,
                                              settings.sampling_nbest, seed),
                tokenizers.tgt.encode_sampled(kept_tgt, settings.sampling_alpha,
                                              settings.sampling_nbest, seed))

    log.info("subword sampling of the training pairs each epoch: alpha %g, nbest %d",
             settings.sampling_alpha, settings.sampling_nbest)
    return (ResampledParallelBatches(src_ids, tgt_ids, resample, cfg.data.max_length, *batching),
            counts)


def fit_recaser(tgt_path: Path, max_lines: int = RECASER_LINES) -> Recaser:
    """The casing model of the training targets: of their first ``max_lines`` lines (all of
    Multi30k's), read streaming; a larger corpus's sample is logged."""
    lines = list(islice(iter_lines(tgt_path), max_lines))
    recaser = Recaser.fit(lines)
    sample = " (a sample: the corpus has more lines)" if len(lines) == max_lines else ""
    log.info("recaser fitted on the first %d training targets%s: %d context entries", len(lines),
             sample, len(recaser.forms))
    return recaser


def run_bleu_tokenizer(cfg: DictConfig, tgt_lang: str) -> str:
    """The sacrebleu tokenizer of a run's BLEU (``evaluation.tokenize``; ``auto``: by ``tgt_lang``),
    in validation and in the test report alike."""
    return bleu_tokenizer(stored_tokenize(cfg, None), tgt_lang)


class Translate:
    """N vs M: a sentence in, a sentence out."""

    name: ClassVar[str] = "translate"

    def setup(self, cfg: DictConfig, distributed: Distributed) -> TrainingSetup:
        bleu_tokenize = run_bleu_tokenizer(cfg, cfg.data.tgt_lang)  # a bad name: before any work
        with distributed.main_first():  # rank 0 fills the corpus and tokenizer caches
            files, tokenizers, settings = corpus_and_tokenizers(cfg)
            corpus = binarize_training_split(cfg, files, tokenizers, settings, distributed.is_main) \
                if uses_binarized(cfg, settings) else None
        if cfg.model.get("share_embeddings") and not tokenizers.joint:
            raise ConfigError("model.share_embeddings=true: the two sides have separate "
                              "SentencePiece models, so an id means another piece on each side; "
                              "set tokenizer.joint=true")
        valid = files.read(files.valid)
        data = training_data(cfg, files, tokenizers, settings, distributed, corpus)
        batches = data.batches
        log.info("train: %d pairs from %s; valid: %d pairs; vocab %d/%d", data.facts["train_pairs"],
                 files.root, len(valid), tokenizers.src.vocab_size, tokenizers.tgt.vocab_size)
        recaser = fit_recaser(files.pair(files.train)[1]) if settings.recase else None
        n_valid = cfg.trainer.valid_max_sentences or len(valid)
        valid_data = ValidationData(tokenizers.src.encode(valid.src[:n_valid]),
                                    tokenizers.tgt.encode(valid.tgt[:n_valid]),
                                    comparable_references(valid.tgt[:n_valid],
                                                          tokenizers.tgt.folds_case))
        # validation is a search, never a draw: search=sampling decodes the test set only
        search: SearchSettings = build(cfg.search, beam=cfg.trainer.valid_beam, sampling=False)
        model = build_translation_model(cfg.model, tokenizers.src.vocab_size,
                                        tokenizers.tgt.vocab_size)
        if not cfg.get("resume"):  # a resumed run's embeddings come from its checkpoint
            load_pretrained_embeddings(model, {"encoder": tokenizers.src, "decoder": tokenizers.tgt})
        restrict_output_to_targets(model.decoder, data.target_ids, settings.sampling_alpha)
        objective = TranslationObjective(tokenizers, valid_data, search, recaser, bleu_tokenize)
        data_files = {str(path): line_count(path)
                      for split in (files.train, files.valid, files.test)
                      for path in files.pair(split)}
        facts = {**data.facts, "vocab_size": tokenizers.tgt.vocab_size, "data_files": data_files}
        return TrainingSetup(model, objective, batches, facts, files)

    def load_predictor(self, payload: dict[str, Any], paths: Sequence[str | Path],
                       options: PredictOptions) -> Translator:
        # The sampling settings count only with sampling: a server's --temperature 0 (greedy
        # generation for the generate topology) means nothing to a translation model's beam.
        # Sampling is on when asked for, else as the checkpoint's search.sampling says.
        stored = (payload.get("config") or {}).get("search") or {}
        sampling = bool(stored.get("sampling", False)) if options.sampling is None \
            else options.sampling
        return Translator.from_checkpoints(
            paths, payload, beam=options.beam, batch_size=options.batch_size,
            length_penalty=options.length_penalty, precision=options.precision,
            device=options.device, sampling=options.sampling,
            temperature=options.temperature if sampling else None,
            top_k=options.top_k if sampling else None, top_p=options.top_p if sampling else None,
            seed=options.seed if sampling else None)

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
            html=cfg.report.html, tokenize=run_bleu_tokenizer(cfg, data.tgt_lang),
            tgt_lang=data.tgt_lang, source_file=str(test.src_path), hypothesis_file=hyp_file.name,
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
                precision=options.precision, device=options.device).translate(sources)
        elif request.baseline:
            baseline = read_aligned(request.baseline, references, "--baseline")
        return evaluation_report(
            sources, references, hypotheses, request.report_dir, request.ref, baseline=baseline,
            baseline_name=request.baseline or "baseline", attention=attention,
            n_bootstrap=request.bootstrap, html=request.html, tokenize=request.tokenize, **facts)

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

