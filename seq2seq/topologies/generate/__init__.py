"""1 vs N (``topology=generate``): generate an utterance for a class, e.g. a SNIPS intent.

Scored by the perplexity of the test utterances given their class, by distinct-1/2 of sampled
utterances, and by intent fidelity: the share of samples that a trained N-vs-1 classifier (the
``topology.judge_checkpoint``) assigns to the class they were generated for.

batches.py: (class, utterance) batches · objective.py: loss and perplexity · predictor.py:
``Generator`` · report.py: the report.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar, Optional, Sequence

from omegaconf import DictConfig

from seq2seq.data.corpus import read_aligned, read_lines
from seq2seq.data.labelled import LabelledCorpus, LabelledSplit, LabelVocab
from seq2seq.errors import CheckpointError, ConfigError
from seq2seq.evaluation.report import line_count
from seq2seq.models import count_parameters
from seq2seq.models.pretrained import load_pretrained_embeddings
from seq2seq.predict import load_predictor
from seq2seq.tokenization import SentencePieceTokenizer
from seq2seq.topologies.base import EvaluationRequest, PredictOptions, Predictor, TrainingSetup, no_ensemble
from seq2seq.topologies.generate.batches import GenerationBatches
from seq2seq.topologies.generate.objective import GenerationObjective
from seq2seq.topologies.generate.predictor import Generator, build_generator
from seq2seq.topologies.generate.report import generation_report
from seq2seq.topologies.labelling.data import file_lines, prepare_labelled
from seq2seq.topologies.labelling.predictor import Labeller
from seq2seq.topologies.labelling.report import summary_lines, write_labelling_report
from seq2seq.training.distributed import Distributed

log = logging.getLogger(__name__)


def load_judge(path: str) -> Predictor:
    """The classifier that judges intent fidelity: a classify (or joint tag) checkpoint."""
    judge = load_predictor(path)
    if not isinstance(judge, Labeller) or not judge.labels.names:
        raise CheckpointError(f"{path}: the judge of intent fidelity must be a classify "
                              "checkpoint (or a tag checkpoint of a joint model)")
    return judge


class Generate:
    """1 vs N: a class in, an utterance out.

    ``judge_checkpoint``: a classify run's best.pt, which scores the intent fidelity of the
    samples; ``temperature`` (0: greedy), ``top_k`` (0: all pieces) and ``max_length`` (pieces)
    are the sampling settings the checkpoint keeps for prediction.
    """

    name: ClassVar[str] = "generate"

    def __init__(self, judge_checkpoint: Optional[str], temperature: float, top_k: int,
                 max_length: int) -> None:
        # The judge is read after training: a wrong path would waste the run.
        if judge_checkpoint is not None and not Path(judge_checkpoint).expanduser().is_file():
            raise ConfigError(f"topology.judge_checkpoint={judge_checkpoint}: no such file (a "
                              "classify run's checkpoints/best.pt)")
        self.judge_checkpoint, self.temperature = judge_checkpoint, temperature
        self.top_k, self.max_length = top_k, max_length

    def setup(self, cfg: DictConfig, distributed: Distributed) -> TrainingSetup:
        with distributed.main_first():
            corpus, tokenizer = prepare_labelled(cfg, self.name,
                                                 [cfg.data.text_file, cfg.data.label_file])
        train = corpus.read(corpus.train, labels=True, tags=False)
        valid = corpus.read(corpus.valid, labels=True, tags=False)
        labels = LabelVocab.build(train.labels or [])
        limit = cfg.data.get("limit_train")
        batches = GenerationBatches(*encoded(train, labels, tokenizer, limit),
                                    cfg.trainer.batch_tokens, cfg.seed, cfg.trainer.max_sentences,
                                    distributed.rank, distributed.world_size)
        valid_batches = GenerationBatches(*encoded(valid, labels, tokenizer), 10**9, 0)
        log.info("train: %d utterances of %d classes from %s; vocab %d", len(batches.sequences),
                 len(labels), corpus.root, tokenizer.vocab_size)
        model = build_generator(cfg.model, len(labels), tokenizer.vocab_size)
        if not cfg.get("resume"):  # a resumed run's embeddings come from its checkpoint
            load_pretrained_embeddings(model, {"decoder": tokenizer})
        if model.decoder.output_vocabulary != "all":  # its tokenizer knows the targets' pieces only
            raise ConfigError("model.decoder.output_vocabulary: the generator's SentencePiece "
                              "model is trained on its utterances alone, so every piece is a "
                              "target piece; set model.decoder.output_vocabulary=all")
        objective = GenerationObjective(valid_batches, tokenizer, labels)
        facts = {"train_utterances": len(batches.sequences), "vocab_size": tokenizer.vocab_size,
                 "data_files": file_lines(train, valid)}
        return TrainingSetup(model, objective, batches, facts, corpus)

    def load_predictor(self, payload: dict[str, Any], paths: Sequence[str | Path],
                       options: PredictOptions) -> Generator:
        no_ensemble(paths, self.name)
        return Generator.from_checkpoint(payload, options.temperature, options.top_k,
                                         options.device)

    def test_report(self, cfg: DictConfig, predictor: Generator, data: LabelledCorpus,
                    run_dir: Path, facts: dict[str, Any]) -> dict[str, Any]:
        test = data.read(data.test, labels=True, tags=False)
        judge = None if self.judge_checkpoint is None else load_judge(self.judge_checkpoint)
        report = generation_report(predictor, test.labels or [], [" ".join(w) for w in test.words],
                                   str(test.files["labels"]), judge, self.judge_checkpoint,
                                   samples=max(cfg.report.samples, 10), seed=cfg.seed)
        if judge is None:
            log.warning("no topology.judge_checkpoint: intent fidelity not measured (train "
                        "experiment=snips_intent first and pass its best.pt)")
        report.update(facts)
        report["data_files"].update(file_lines(test))
        write_labelling_report(report, run_dir, cfg.report.html)
        log.info("Test perplexity %.2f, distinct-2 %.2f, intent fidelity %s; report in %s",
                 report["perplexity"], report["distinct_2"], report["intent_fidelity"],
                 run_dir / "report.md")
        return report

    def evaluate(self, request: EvaluationRequest, predictor: Optional[Generator]) -> dict[str, Any]:
        if predictor is None or request.src is None:
            raise ConfigError("a generate model is scored with --checkpoint and --src (classes, "
                              "one per line); --hyp scores translations, classes or tags")
        references = read_lines(request.ref)
        classes = [c.strip() for c in read_aligned(request.src, references, "--src")]
        judge = None if request.judge is None else load_judge(request.judge)
        report = generation_report(predictor, classes, references, request.src, judge,
                                   request.judge)
        report.update(checkpoint=request.checkpoints[0], num_params=count_parameters(predictor.model),
                      data_files={p: line_count(p) for p in (request.src, request.ref) if p})
        write_labelling_report(report, request.report_dir, request.html)
        return report

    def summary(self, report: dict[str, Any]) -> list[str]:
        return summary_lines(report)


def encoded(split: LabelledSplit, labels: LabelVocab, tokenizer: SentencePieceTokenizer,
            limit: Optional[int] = None) -> tuple[list[int], list[list[int]]]:
    """The first ``limit`` (class id, utterance pieces) pairs of a split."""
    return (labels.encode((split.labels or [])[:limit], str(split.files["labels"])),
            tokenizer.encode([" ".join(w) for w in split.words[:limit]]))
