"""What every topology provides, and what the driver (``seq2seq/pipeline.py``), the translate tool
and the evaluate tool ask of it.

A topology knows its task: which corpus it reads, which model it builds, how that model is trained
and scored, how a checkpoint becomes a predictor (lines in, one line out per line), and what its
report holds. The driver knows the steps and their order, and nothing of the task (the shape of
fairseq's ``FairseqTask``, kept small).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Optional, Protocol, Sequence

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from seq2seq.device import to_device
from seq2seq.errors import CheckpointError
from seq2seq.training.distributed import Distributed
from seq2seq.training.state import Objective


@dataclass(frozen=True)
class PredictOptions:
    """Settings a user may give a predictor, each None for the checkpoint's own."""

    beam: Optional[int] = None
    batch_size: Optional[int] = None
    length_penalty: Optional[float] = None
    precision: Optional[str] = None
    temperature: Optional[float] = None  # sampling temperature (generate: 0 is greedy)
    top_k: Optional[int] = None          # sample among the k most likely pieces
    sampling: Optional[bool] = None      # translate: sample instead of beam search
    top_p: Optional[float] = None        # translate: sample within the nucleus of this mass
    seed: Optional[int] = None           # translate: seed of the sampling draws
    device: Optional[str] = None         # auto | cpu | cuda | cuda:N (seq2seq/device.py); None: auto


class Predictor(Protocol):
    """A loaded model that turns input lines into output lines, one for one."""

    model: nn.Module

    def predict(self, lines: Sequence[str], line_offset: int = 0) -> list[str]:
        """One output line per input line; ``line_offset`` numbers the lines in warnings."""
        ...


@dataclass(frozen=True)
class EvaluationRequest:
    """What ``seq2seq-evaluate`` was asked to score (paths as given on the command line)."""

    ref: str
    report_dir: Path
    src: Optional[str] = None
    hyp: Optional[str] = None
    checkpoints: Sequence[str] = ()
    baseline: Optional[str] = None
    labels: Optional[str] = None          # tag checkpoints of joint models: the gold classes
    judge: Optional[str] = None           # generate: a classify checkpoint for intent fidelity
    bootstrap: int = 1000
    attention_plots: int = 3
    html: bool = False
    options: PredictOptions = PredictOptions()
    tokenize: str = "13a"                 # sacrebleu's BLEU tokenizer (evaluation/bleu.py)


@dataclass
class TrainingSetup:
    """What a topology hands the driver to train: the model, its objective and its batches."""

    model: nn.Module
    objective: Objective
    batches: Any           # a BucketedBatches: epochs of training batches for this rank
    facts: dict[str, Any]  # figures about the data for the report (training pairs, vocabulary)
    data: Any              # the corpus, for ``test_report``


class Topology(Protocol):
    """One input/output shape: translate (N vs M), classify (N vs 1), tag (N vs N), generate
    (1 vs N). Built from ``conf/topology/NAME.yaml``, whose keys are its constructor's."""

    name: ClassVar[str]

    def setup(self, cfg: DictConfig, distributed: Distributed) -> TrainingSetup:
        """Read the corpus, train (or reuse) the tokenizers, build the model and its objective.
        Rank 0 fills the caches first."""
        ...

    def load_predictor(self, payload: dict[str, Any], paths: Sequence[str | Path],
                       options: PredictOptions) -> Predictor:
        """The predictor of a loaded checkpoint (``payload``, read from ``paths[0]``); several
        paths make an ensemble where the topology supports one."""
        ...

    def test_report(self, cfg: DictConfig, predictor: Predictor, data: Any, run_dir: Path,
                    facts: dict[str, Any]) -> dict[str, Any]:
        """Score the test split of ``data`` (``TrainingSetup.data``), write the outputs and the
        report (with ``facts``, the run's figures) into ``run_dir``, and return the report."""
        ...

    def evaluate(self, request: EvaluationRequest, predictor: Optional[Predictor]) -> dict[str, Any]:
        """Score a checkpoint's predictions (``predictor``) or an output file (``request.hyp``)
        against ``request.ref``, and write the report into ``request.report_dir``."""
        ...

    def summary(self, report: dict[str, Any]) -> list[str]:
        """The lines the evaluate tool prints for a report."""
        ...


def no_ensemble(paths: Sequence[str | Path], topology: str) -> None:
    """A CheckpointError unless ``paths`` is one checkpoint: only translation makes ensembles."""
    if len(paths) > 1:
        raise CheckpointError(f"{paths[0]}: a {topology} checkpoint; only translation "
                              "checkpoints make ensembles")


def loss_and_perplexity(batches: Iterable[Any], summed: Callable[[Any], Tensor],
                        device: Optional[torch.device] = None) -> tuple[float, float]:
    """Loss per predicted token over ``batches`` (``summed(batch)``: the batch's summed loss, the
    batch moved to the model's ``device`` first), without gradients, and the perplexity it gives."""
    total, tokens = 0.0, 0
    with torch.inference_mode():
        for batch in batches:
            total += float(summed(batch if device is None else to_device(batch, device)))
            tokens += batch.num_tgt_tokens
    loss = total / max(tokens, 1)
    return loss, math.exp(min(loss, 50.0))


def training_facts(state: Any) -> dict[str, Any]:
    """The training figures every report carries (``state``: the trainer's ``TrainState``)."""
    # train_seconds: in training steps (the tok/s figure's time); wall_seconds: validation too.
    return dict(train_seconds=round(state.train_seconds, 1),
                wall_seconds=round(state.wall_seconds, 1), train_tokens=state.train_tokens,
                train_tokens_per_second=round(state.train_tokens / max(state.train_seconds, 1e-9), 1),
                steps=state.step, best_step=state.best_step, stop_reason=state.stop_reason,
                train_precision=state.precision, best_valid=dict(state.best_metrics))
