"""1 vs N (``topology=generate``): generate an utterance for a class, e.g. a SNIPS intent.

Scored by the perplexity of the test utterances given their class, by distinct-1/2 of sampled
utterances, and by intent fidelity: the share of samples that a trained N-vs-1 classifier (the
``topology.judge_checkpoint``) assigns to the class they were generated for.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from seq2seq.config import build
from seq2seq.data.batching import BucketedBatches, pad
from seq2seq.data.labelled import LabelVocab
from seq2seq.errors import CheckpointError, ConfigError
from seq2seq.evaluation.labels import distinct_n, labelling_sections
from seq2seq.evaluation.report import library_versions, line_count, write_report
from seq2seq.models import count_parameters
from seq2seq.search import ModelStepper, greedy_search, sampler
from seq2seq.tokenization import BOS, EOS, PAD, SentencePieceTokenizer, TokenizerPair
from seq2seq.topologies.translation import loss_and_perplexity
from seq2seq.training.checkpoint import checkpoint_task, load_checkpoint
from seq2seq.training.distributed import Distributed

log = logging.getLogger(__name__)


class GenerationBatch(NamedTuple):
    conditions: Tensor  # [B] class ids
    tgt_in: Tensor      # [B, T] BOS + piece ids
    tgt_out: Tensor     # [B, T] piece ids + EOS
    indices: Tensor

    @property
    def num_tgt_tokens(self) -> int:
        return int((self.tgt_out != PAD).sum())


def make_generation_batch(conditions: Sequence[int], sequences: Sequence[Sequence[int]],
                          indices: Sequence[int]) -> GenerationBatch:
    tgt_in, _ = pad([[BOS] + list(s) for s in sequences])
    tgt_out, _ = pad([list(s) + [EOS] for s in sequences])
    return GenerationBatch(torch.as_tensor(list(conditions)), tgt_in, tgt_out,
                           torch.as_tensor(list(indices)))


class GenerationBatches(BucketedBatches):
    """(class, utterance) pairs bucketed by utterance length."""

    def __init__(self, conditions: list[int], sequences: list[list[int]], batch_tokens: int,
                 seed: int, max_sentences: Optional[int] = None, rank: int = 0,
                 world_size: int = 1) -> None:
        super().__init__([len(s) + 1 for s in sequences], batch_tokens, seed, max_sentences, rank,
                         world_size)
        self.conditions, self.sequences = conditions, sequences

    def batch(self, ids: Sequence[int]) -> GenerationBatch:
        return make_generation_batch([self.conditions[i] for i in ids],
                                     [self.sequences[i] for i in ids], ids)


def summed_loss(model: nn.Module, batch: GenerationBatch, teacher_forcing: float = 1.0,
                smoothing: float = 0.0) -> Tensor:
    """The batch's label-smoothed cross-entropy, summed over its real (non-padding) targets: the
    output layer fused with the loss, as translation does (no [N, V] logits)."""
    real = batch.tgt_out != PAD
    readout = model(batch.conditions, batch.tgt_in, teacher_forcing, output_mask=real,
                    project=False).readout
    return model.decoder.output_loss(readout, batch.tgt_out[real], smoothing)


def perplexity(model: nn.Module, batches: GenerationBatches) -> tuple[float, float]:
    """(loss per piece, perplexity per piece) of the utterances given their classes."""
    model.eval()
    return loss_and_perplexity(batches.in_order(), lambda batch: summed_loss(model, batch))


class GenerationObjective:
    """Teacher-forced cross-entropy; validated by perplexity (lower is better)."""

    metrics = ("loss", "ppl")

    def __init__(self, valid: GenerationBatches, tokenizer: SentencePieceTokenizer,
                 labels: LabelVocab) -> None:
        self.valid, self.tokenizer, self.labels = valid, tokenizer, labels

    def loss(self, model: nn.Module, batch: GenerationBatch, teacher_forcing: float,
             smoothing: float) -> Tensor:
        return summed_loss(model, batch, teacher_forcing, smoothing)

    def validate(self, model: nn.Module) -> dict[str, float]:
        loss, ppl = perplexity(model, self.valid)
        return {"loss": loss, "ppl": ppl}

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"tokenizers": TokenizerPair(self.tokenizer, self.tokenizer).state_dict(),
                "labels": self.labels.names}


class Generator:
    """Load a generate checkpoint once; write utterances for classes.

    >>> Generator.from_checkpoint("outputs/.../best.pt").generate(["PlayMusic"], temperature=0.7)
    """

    def __init__(self, model: nn.Module, tokenizer: SentencePieceTokenizer, labels: LabelVocab,
                 temperature: float = 0.7, top_k: int = 0, max_length: int = 40) -> None:
        self.model, self.tokenizer, self.labels = model.eval(), tokenizer, labels
        self.temperature, self.top_k, self.max_length = temperature, top_k, max_length

    @classmethod
    def from_checkpoint(cls, path: str | Path, payload: Optional[dict] = None,
                        **overrides: Any) -> "Generator":
        """``payload``: the checkpoint's contents, if already loaded; ``overrides`` replace its
        sampling settings (temperature, top_k, max_length)."""
        payload = payload or load_checkpoint(path)
        task = checkpoint_task(payload)
        if task != "generate":
            raise CheckpointError(f"{path}: a {task} checkpoint, not a generate one")
        config = OmegaConf.create(payload["config"])
        tokenizer = TokenizerPair.from_state_dict(payload["tokenizers"]).src
        labels = LabelVocab(payload["labels"])
        model = build_generator(config.model, len(labels), tokenizer.vocab_size)
        model.load_state_dict(payload["model"])
        options = {k: config.topology[k] for k in ("temperature", "top_k", "max_length")}
        options.update({k: v for k, v in overrides.items() if v is not None})
        return cls(model, tokenizer, labels, **options)

    def generate(self, classes: Sequence[str], temperature: Optional[float] = None,
                 top_k: Optional[int] = None, seed: Optional[int] = None,
                 line_offset: int = 0) -> list[str]:
        """One utterance per class name; temperature 0 means greedy. An unknown class (or an
        empty line) gives an empty line, with a warning."""
        temperature = self.temperature if temperature is None else temperature
        top_k = self.top_k if top_k is None else top_k
        out = [""] * len(classes)
        known = []
        for i, name in enumerate(classes):
            if name.strip() in self.labels.index:
                known.append(i)
            elif name.strip():
                log.warning("input line %d: unknown class %r (known: %s)", line_offset + i + 1,
                            name.strip(), ", ".join(self.labels.names))
        if not known:
            return out
        conditions = torch.tensor([self.labels.index[classes[i].strip()] for i in known])
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        choose = None if temperature <= 0 else sampler(temperature, top_k, generator)
        stepper = ModelStepper(self.model)
        with torch.inference_mode():
            state = stepper.start(conditions, None)
            limits = torch.full((len(known),), self.max_length)
            options = {} if choose is None else {"choose": choose}
            hyps = greedy_search(stepper, state, len(known), limits, **options)
        for i, text in zip(known, self.tokenizer.decode([h.tokens for h in hyps])):
            out[i] = text
        return out


def build_generator(model_cfg: DictConfig | dict, num_conditions: int, vocab_size: int) -> nn.Module:
    if isinstance(model_cfg, dict):
        model_cfg = OmegaConf.create(model_cfg)
    return build(model_cfg, num_conditions=num_conditions, tgt_vocab_size=vocab_size)


def generation_report(generator: Generator, classes: Sequence[str], utterances: Sequence[str],
                      test_set: str, judge_checkpoint: Optional[str] = None, samples: int = 10,
                      seed: int = 0) -> dict[str, Any]:
    """Perplexity of the test utterances given their classes; one sample per test line for
    distinct-1/2 and (with a judge classifier checkpoint) intent fidelity."""
    from seq2seq.topologies.labelling import Labeller

    ids = generator.labels.encode(classes, test_set)
    pieces = generator.tokenizer.encode(list(utterances))
    loss, ppl = perplexity(generator.model, GenerationBatches(ids, pieces, 10**9, 0))
    generated = generator.generate(classes, seed=seed)
    report: dict[str, Any] = {
        "topology": "generate", "test_set": test_set, "num_examples": len(classes),
        "perplexity": round(ppl, 3), "loss_per_piece": round(loss, 4),
        "temperature": generator.temperature, "top_k": generator.top_k,
        "distinct_1": distinct_n(generated, 1), "distinct_2": distinct_n(generated, 2),
        "intent_fidelity": None, "judge_checkpoint": judge_checkpoint}
    judged = None
    if judge_checkpoint:
        judged = [p.split("\t")[0] for p in Labeller.from_checkpoint(judge_checkpoint).predict(generated)]
        agree = sum(j == c for j, c in zip(judged, classes))
        report["intent_fidelity"] = round(100 * agree / max(len(classes), 1), 2)
    report["samples"] = [
        {"class": c, "generated": g, **({"judge": judged[i]} if judged else {})}
        for i, (c, g) in enumerate(zip(classes, generated)) if i % max(1, len(classes) // samples) == 0
    ][:samples]
    return report


def run(cfg: DictConfig, run_dir: Path, overrides: list[str], distributed: Distributed,
        task: str = "generate", judge_checkpoint: Optional[str] = None, temperature: float = 0.7,
        top_k: int = 0, max_length: int = 40) -> dict[str, Any]:
    """Train a class-conditioned generator, score it on the test split, write the report."""
    from seq2seq.pipeline import choose_test_checkpoint, train_model
    from seq2seq.topologies.labelling import prepare_labelled
    from seq2seq.topologies.translation import training_facts

    with distributed.main_first():
        corpus, tokenizer = prepare_labelled(cfg, [cfg.data.text_file, cfg.data.label_file])
    train = corpus.read(corpus.train, labels=True, tags=False)
    valid = corpus.read(corpus.valid, labels=True, tags=False)
    labels = LabelVocab.build(train.labels)
    limit = cfg.data.get("limit_train")

    def encoded(split, n=None):
        return (labels.encode(split.labels[:n], str(split.files["labels"])),
                tokenizer.encode([" ".join(w) for w in split.words[:n]]))

    trainer_cfg = cfg.trainer
    batches = GenerationBatches(*encoded(train, limit), trainer_cfg.batch_tokens, cfg.seed,
                                trainer_cfg.max_sentences, distributed.rank, distributed.world_size)
    valid_batches = GenerationBatches(*encoded(valid), 10**9, 0)
    log.info("train: %d utterances of %d classes from %s; vocab %d", len(batches.sequences),
             len(labels), corpus.root, tokenizer.vocab_size)
    model = build_generator(cfg.model, len(labels), tokenizer.vocab_size)
    if model.decoder.output_vocabulary != "all":  # its tokenizer knows the targets' pieces only
        raise ConfigError("model.decoder.output_vocabulary: the generator's SentencePiece model "
                          "is trained on its utterances alone, so every piece is a target piece; "
                          "set model.decoder.output_vocabulary=all")
    objective = GenerationObjective(valid_batches, tokenizer, labels)
    state = train_model(cfg, run_dir, model, objective, batches, distributed)
    if not distributed.is_main:
        return {}

    best, averaging = choose_test_checkpoint(cfg, run_dir, model, objective, state)
    generator = Generator.from_checkpoint(best)
    test = corpus.read(corpus.test, labels=True, tags=False)
    report = generation_report(generator, test.labels, [" ".join(w) for w in test.words],
                               str(test.files["labels"]), judge_checkpoint,
                               samples=max(cfg.report.samples, 10), seed=cfg.seed)
    if judge_checkpoint is None:
        log.warning("no topology.judge_checkpoint: intent fidelity not measured (train "
                    "experiment=snips_intent first and pass its best.pt)")
    report.update(
        checkpoint=str(best), num_params=count_parameters(generator.model), **training_facts(state),
        best_valid=state.best_metrics, train_utterances=len(batches.sequences),
        learning_curve="learning_curve.png", overrides=list(overrides), seed=cfg.seed,
        vocab_size=tokenizer.vocab_size,
        data_files={str(p): line_count(p) for s in (train, valid, test) for p in s.files.values()},
        versions=library_versions(), **averaging)
    write_report(report, run_dir, html=cfg.report.html, content=labelling_sections(report))
    log.info("Test perplexity %.2f, distinct-2 %.2f, intent fidelity %s; report in %s",
             report["perplexity"], report["distinct_2"], report["intent_fidelity"],
             run_dir / "report.md")
    return report
