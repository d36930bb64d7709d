"""``Generator``: a generate checkpoint loaded once, writing utterances for classes."""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from seq2seq.config import build, stored_model_config
from seq2seq.data.labelled import LabelVocab
from seq2seq.device import model_device, resolve_device
from seq2seq.models.generator import ConditionedGenerator
from seq2seq.sampling import sampler, seeded_generator
from seq2seq.search import ModelStepper, greedy_search, most_likely
from seq2seq.tokenization import SentencePieceTokenizer, TokenizerPair

log = logging.getLogger(__name__)


def build_generator(model_cfg: DictConfig | dict, num_conditions: int, vocab_size: int
                    ) -> ConditionedGenerator:
    """The ``model`` config built for ``num_conditions`` classes and a vocabulary."""
    if isinstance(model_cfg, dict):
        model_cfg = OmegaConf.create(model_cfg)
    return build(model_cfg, num_conditions=num_conditions, tgt_vocab_size=vocab_size)


class Generator:
    """A class-conditioned generator with its tokenizer and class names; writes utterances.

    >>> Generator.from_checkpoint(load_checkpoint("outputs/.../best.pt")).generate(["PlayMusic"])
    """

    def __init__(self, model: nn.Module, tokenizer: SentencePieceTokenizer, labels: LabelVocab,
                 temperature: float, top_k: int, max_length: int) -> None:
        self.model, self.tokenizer, self.labels = model.eval(), tokenizer, labels
        self.temperature, self.top_k, self.max_length = temperature, top_k, max_length

    @classmethod
    def from_checkpoint(cls, payload: dict[str, Any], temperature: Optional[float] = None,
                        top_k: Optional[int] = None, device: Optional[str] = None) -> "Generator":
        """The generator of a loaded generate checkpoint, on ``device`` (``seq2seq/device.py``;
        None: auto); ``temperature`` and ``top_k`` replace its sampling settings when given."""
        where = resolve_device(device, "device")
        config = OmegaConf.create(payload["config"])
        tokenizer = TokenizerPair.from_state_dict(payload["tokenizers"]).src
        labels = LabelVocab(payload["labels"])
        model = build_generator(stored_model_config(config.model), len(labels),
                                tokenizer.vocab_size)
        model.load_state_dict(payload["model"])
        model.to(where)
        stored = config.topology
        return cls(model, tokenizer, labels,
                   stored.temperature if temperature is None else temperature,
                   stored.top_k if top_k is None else top_k, stored.max_length)

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
        device = model_device(self.model)
        conditions = torch.tensor([self.labels.index[classes[i].strip()] for i in known],
                                  device=device)
        # sampling draws from a generator on the model's device (the same seed, other draws)
        generator = seeded_generator(seed, device)
        choose = None if temperature <= 0 else sampler(temperature, top_k, generator)
        stepper = ModelStepper(self.model)
        with torch.inference_mode():
            state = stepper.start(conditions, None)
            limits = torch.full((len(known),), self.max_length, device=device)
            hyps = greedy_search(stepper, state, len(known), limits, choose=choose or most_likely)
        for i, text in zip(known, self.tokenizer.decode([h.tokens for h in hyps]), strict=True):
            out[i] = text
        return out

    def predict(self, lines: Sequence[str], line_offset: int = 0) -> list[str]:
        """``generate`` with the settings it was loaded with (the ``Predictor`` protocol)."""
        return self.generate(lines, line_offset=line_offset)
