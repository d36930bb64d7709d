"""What the class-conditioned generator is trained on and validated by: the teacher-forced loss
of the utterances given their classes, and its perplexity."""

from __future__ import annotations

from typing import Any, cast

from torch import Tensor, nn

from seq2seq.data.labelled import LabelVocab
from seq2seq.device import model_device
from seq2seq.models.generator import ConditionedGenerator
from seq2seq.tokenization import PAD, SentencePieceTokenizer, TokenizerPair
from seq2seq.topologies.base import loss_and_perplexity
from seq2seq.topologies.generate.batches import GenerationBatch, GenerationBatches


def generation_loss(model: nn.Module, batch: GenerationBatch, teacher_forcing: float = 1.0,
                    smoothing: float = 0.0) -> Tensor:
    """The batch's label-smoothed cross-entropy, summed over its real (non-padding) targets: the
    output layer fused with the loss, as translation does (no [N, V] logits)."""
    real = batch.tgt_out != PAD
    readout = model(batch.conditions, batch.tgt_in, teacher_forcing, output_mask=real,
                    project=False).readout
    return cast(ConditionedGenerator, model).decoder.output_loss(readout, batch.tgt_out[real],
                                                                 smoothing)


def perplexity(model: nn.Module, batches: GenerationBatches) -> tuple[float, float]:
    """(loss per piece, perplexity per piece) of the utterances given their classes."""
    model.eval()
    return loss_and_perplexity(batches.in_order(), lambda batch: generation_loss(model, batch),
                               model_device(model))


class GenerationObjective:
    """Teacher-forced cross-entropy; validated by perplexity (lower is better)."""

    metrics = ("loss", "ppl")

    def __init__(self, valid: GenerationBatches, tokenizer: SentencePieceTokenizer,
                 labels: LabelVocab) -> None:
        self.valid, self.tokenizer, self.labels = valid, tokenizer, labels

    def loss(self, model: nn.Module, batch: GenerationBatch, teacher_forcing: float,
             smoothing: float) -> Tensor:
        return generation_loss(model, batch, teacher_forcing, smoothing)

    def validate(self, model: nn.Module) -> dict[str, float]:
        loss, ppl = perplexity(model, self.valid)
        return {"loss": loss, "ppl": ppl}

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"tokenizers": TokenizerPair(self.tokenizer, self.tokenizer).state_dict(),
                "labels": self.labels.names}
