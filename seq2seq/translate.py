"""Translate lines with a trained model: one output line for every input line, in order."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence, cast, overload

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from seq2seq.config import build, packaged_preset, stored_model_config
from seq2seq.data.batching import make_batch
from seq2seq.device import model_device, resolve_device
from seq2seq.errors import CheckpointError, ConfigError, check_range
from seq2seq.models.encoder_decoder import EncoderDecoder
from seq2seq.precision import check_precision
from seq2seq.recase import Recaser
from seq2seq.sampling import sampler, seeded_generator
from seq2seq.search import Ensemble, Hypothesis, check_nbest, decode_nbest
from seq2seq.tokenization import TokenizerPair
from seq2seq.topologies.registry import checkpoint_topology
from seq2seq.training.checkpoint import load_model_checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchSettings:
    """How to decode (the `search` config group; its values live in ``conf/search/beam.yaml``;
    ``conf/search/sampling.yaml`` samples). The sampling keys have defaults: a checkpoint written
    before they existed decodes as it did."""

    beam: int
    length_penalty: float          # GNMT alpha; 0 ranks by raw log-probability
    max_length_ratio: float        # output at most ratio x source pieces ...
    max_length: int                # ... and never more than this
    batch_size: int
    precision: str                 # fp32 | bf16 (CPU autocast) | auto (seq2seq/precision.py)
    sampling: bool = False         # draw each token (beam unused) instead of searching
    temperature: float = 1.0       # sampling: divides the log-probabilities; -> 0 is greedy
    top_k: int = 0                 # sampling: among the k most likely tokens (0: all)
    top_p: float = 1.0             # sampling: within the nucleus of this mass (1: all)
    seed: Optional[int] = None     # sampling: a reproducible stream (None: other draws each run)

    def __post_init__(self) -> None:
        check_range("search.beam", self.beam, 1)
        check_precision("search.precision", self.precision)
        check_range("search.batch_size", self.batch_size, 1)
        check_range("search.max_length_ratio", self.max_length_ratio, 0.0)
        check_range("search.max_length", self.max_length, 1)
        if not isinstance(self.sampling, bool):
            raise ConfigError(f"search.sampling={self.sampling!r}; expected true or false")
        if not self.temperature > 0:
            raise ConfigError(f"search.temperature={self.temperature!r} (--temperature); expected "
                              "a temperature > 0 (a tiny one, 1e-4, samples the greedy output)")
        check_range("search.top_k", self.top_k, 0)
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"search.top_p={self.top_p!r} (--top-p) is out of range; expected "
                              "a nucleus mass in (0, 1]")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ConfigError(f"search.seed={self.seed!r}; expected an integer or null")


def translate_ids(model: nn.Module, sources: Sequence[Sequence[int]], search: SearchSettings,
                  return_attention: bool = False, generator: Optional[torch.Generator] = None
                  ) -> list[Hypothesis]:
    """Decode id sequences (no EOS) in length-sorted batches; results come back in input order."""
    return [hyps[0] for hyps in translate_ids_nbest(model, sources, search, 1, return_attention,
                                                    generator)]


def translate_ids_nbest(model: nn.Module, sources: Sequence[Sequence[int]],
                        search: SearchSettings, nbest: int, return_attention: bool = False,
                        generator: Optional[torch.Generator] = None) -> list[list[Hypothesis]]:
    """``translate_ids`` with the ``nbest`` best hypotheses of each source, best first (beam
    search: ``nbest`` <= ``search.beam``; sampling: ``nbest`` independent samples). Sampling
    draws from ``generator`` (None: a new one seeded with ``search.seed``)."""
    choose = None
    if search.sampling:
        if generator is None:
            generator = seeded_generator(search.seed, model_device(model))
        choose = sampler(search.temperature, search.top_k, generator, search.top_p)
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    results: list[list[Hypothesis]] = [[] for _ in sources]
    for start in range(0, len(order), search.batch_size):
        chunk = order[start : start + search.batch_size]
        batch = make_batch([sources[i] for i in chunk], None, chunk)
        lists = decode_nbest(model, batch.src, batch.src_len, nbest, search.beam,
                             search.length_penalty, search.max_length_ratio, search.max_length,
                             return_attention, search.precision, choose)
        for i, hyps in zip(chunk, lists):
            results[i] = hyps
    return results


class Translation(NamedTuple):
    text: str
    src_pieces: list[str]
    hyp_pieces: list[str]
    score: float
    attention: Optional[Tensor]  # [hyp pieces + EOS, src pieces + EOS]


def build_translation_model(model_cfg: DictConfig | dict, src_vocab_size: int,
                            tgt_vocab_size: int) -> EncoderDecoder:
    """The ``model`` config (an encoder-decoder) built for the two vocabulary sizes."""
    if isinstance(model_cfg, dict):
        model_cfg = OmegaConf.create(model_cfg)
    return build(model_cfg, src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size)


def model_from_checkpoint(payload: dict[str, Any], device: Optional[torch.device] = None
                          ) -> tuple[nn.Module, TokenizerPair, DictConfig]:
    """Rebuild a translation model (in eval mode, on ``device``: None for the CPU), its tokenizers
    and its config from a loaded checkpoint."""
    config = OmegaConf.create(payload["config"])
    tokenizers = TokenizerPair.from_state_dict(payload["tokenizers"])
    model = build_translation_model(stored_model_config(config.model), tokenizers.src.vocab_size,
                                    tokenizers.tgt.vocab_size)
    # A restricted output layer (output_vocabulary=training_targets) takes its saved ids as it loads.
    model.load_state_dict(payload["model"])
    model.to(device or torch.device("cpu")).eval()
    return model, tokenizers, config


def comparable_references(references: Sequence[str], lowercase_output: bool) -> list[str]:
    """The references as the model can write them: lowercased when its output is
    (``tokenizer.normalization=nmt_nfkc_cf`` without ``tokenizer.recase``), as JoeyNMT's
    ``lowercase`` scores, so that every score is the case-insensitive one the published
    lowercased results report."""
    if lowercase_output:
        return [line.lower() for line in references]
    return list(references)


def checkpoint_recaser(payload: dict) -> Optional[Recaser]:
    """The casing model stored in a loaded checkpoint (``tokenizer.recase=true``), or None."""
    return Recaser.from_state_dict(payload["recaser"]) if payload.get("recaser") else None


class Translator:
    """Load a checkpoint once, translate lists of sentences.

    >>> translator = Translator.from_checkpoint("outputs/.../checkpoints/best.pt")
    >>> translator.translate(["we have twenty-one cats"], beam=5)
    """

    def __init__(self, model: nn.Module, tokenizers: TokenizerPair, search: SearchSettings,
                 max_input_length: int = 250, recaser: Optional[Recaser] = None) -> None:
        self.model, self.tokenizers, self.search = model.eval(), tokenizers, search
        self.max_input_length = max_input_length
        self.recaser = recaser  # puts the case back into a case-folding model's output
        self.last_seconds = 0.0  # decoding time of the last call, model load excluded
        # Sampling with search.seed draws one stream over all calls (seeded once, not per call:
        # the chunks of a long input must not reuse the same draws).
        self._random: Optional[torch.Generator] = None
        self._random_seed: Optional[int] = None

    @property
    def writes_lowercase(self) -> bool:
        """Whether the translations come out lowercased (a case-folding model, not recased)."""
        return self.tokenizers.tgt.folds_case and self.recaser is None

    @classmethod
    def from_checkpoint(cls, path: str | Path, payload: Optional[dict] = None,
                        device: Optional[str] = None, **search_overrides) -> "Translator":
        """Build a translator from a checkpoint (``payload``: its contents, if already loaded) on
        ``device`` (``seq2seq/device.py``; None: auto); ``search_overrides`` replace its search
        settings."""
        where = resolve_device(device, "device")
        payload = payload or load_model_checkpoint(path)
        model, tokenizers, config = model_from_checkpoint(payload, where)
        return cls.from_parts(model, tokenizers, config, checkpoint_recaser(payload),
                              **search_overrides)

    @classmethod
    def from_parts(cls, model: nn.Module, tokenizers: TokenizerPair, config: DictConfig,
                   recaser: Optional[Recaser] = None, **search_overrides) -> "Translator":
        """A translator of ``model`` (an EncoderDecoder, or a model with its own
        ``search_stepper``: an exported one) with the search settings and input length of a
        checkpoint's ``config``; ``search_overrides`` replace its search settings."""
        # The packaged search settings under the stored ones fill the keys of a checkpoint written
        # before they existed. Built directly, not through the stored _target_: a checkpoint must
        # not choose what gets imported.
        search = cast(dict, OmegaConf.to_container(OmegaConf.merge(
            packaged_preset("search/beam.yaml"), config.get("search") or {})))
        settings = {str(k): v for k, v in search.items() if not str(k).startswith("_")}
        settings.update({k: v for k, v in search_overrides.items() if v is not None})
        max_input = int(config.get("data", {}).get("max_length", 250))
        return cls(model, tokenizers, SearchSettings(**settings), max_input_length=max_input,
                   recaser=recaser)

    @classmethod
    def from_checkpoints(cls, paths: Sequence[str | Path], payload: Optional[dict] = None,
                         device: Optional[str] = None, **search_overrides) -> "Translator":
        """One checkpoint: ``from_checkpoint``. Several: their ensemble (``search.Ensemble``),
        which needs the same tokenizers in all; search settings come from the first
        (``payload``: the first checkpoint's contents, if already loaded)."""
        payload = payload or load_model_checkpoint(paths[0])
        first = cls.from_checkpoint(paths[0], payload, device, **search_overrides)
        if len(paths) == 1:
            return first
        members = [first.model]
        translation = type(checkpoint_topology(payload))
        for path in paths[1:]:
            member = load_model_checkpoint(path)
            topology = checkpoint_topology(member)
            if type(topology) is not translation:
                raise CheckpointError(f"{path}: a {topology.name} checkpoint; ensembles are of "
                                      "translation checkpoints")
            if member["tokenizers"] != first.tokenizers.state_dict():
                raise CheckpointError(f"{path}: its SentencePiece models differ from those of "
                                      f"{paths[0]}; an ensemble's members must share them")
            members.append(model_from_checkpoint(member, model_device(first.model))[0])
        return cls(Ensemble(members), first.tokenizers, first.search, first.max_input_length,
                   first.recaser)

    def _encode(self, sentences: Sequence[str], line_offset: int = 0
                ) -> tuple[list[list[int]], list[int]]:
        ids = self.tokenizers.src.encode([s.strip() for s in sentences])
        for number, seq in enumerate(ids, start=line_offset + 1):
            if len(seq) > self.max_input_length:
                log.warning("input line %d has %d pieces; truncated to %d", number, len(seq),
                            self.max_input_length)
                del seq[self.max_input_length:]
        return ids, [i for i, seq in enumerate(ids) if seq]

    def _generator(self, search: SearchSettings) -> Optional[torch.Generator]:
        """The seeded stream sampling draws from (None: not sampling, or no seed)."""
        if not search.sampling or search.seed is None:
            return None
        if self._random is None or self._random_seed != search.seed:
            self._random = seeded_generator(search.seed, model_device(self.model))
            self._random_seed = search.seed
        return self._random

    @overload
    def translate_detailed(self, sentences: Sequence[str], beam: Optional[int] = None,
                           return_attention: bool = False, line_offset: int = 0, *,
                           nbest: None = None) -> list[Translation]: ...

    @overload
    def translate_detailed(self, sentences: Sequence[str], beam: Optional[int] = None,
                           return_attention: bool = False, line_offset: int = 0, *,
                           nbest: int) -> list[list[Translation]]: ...

    def translate_detailed(self, sentences: Sequence[str], beam: Optional[int] = None,
                           return_attention: bool = False, line_offset: int = 0, *,
                           nbest: Optional[int] = None
                           ) -> list[Translation] | list[list[Translation]]:
        """Translations with their pieces, scores and (optionally) attention weights.
        ``line_offset`` numbers the lines in warnings (when ``sentences`` is part of a stream).

        With ``nbest=N``, a list per sentence of its N best translations, best score first: beam
        search's N best (N <= beam, else ConfigError; fewer only when the search runs out of
        prefixes), or with ``search.sampling``, N independent samples. An empty or blank
        sentence gives N empty translations of score 0. Without ``nbest``, one per sentence."""
        search = self.search if beam is None else SearchSettings(
            **{**self.search.__dict__, "beam": beam})
        count = 1 if nbest is None else nbest
        if not search.sampling:
            check_nbest(count, search.beam)
        ids, nonempty = self._encode(sentences, line_offset)
        start = time.perf_counter()
        lists = translate_ids_nbest(self.model, [ids[i] for i in nonempty], search, count,
                                    return_attention, self._generator(search))
        self.last_seconds = time.perf_counter() - start
        out = [[Translation("", [], [], 0.0, None) for _ in range(count)] for _ in sentences]
        flat = [hyp for hyps in lists for hyp in hyps]
        texts = iter(self._texts(flat))
        for i, hyps in zip(nonempty, lists):
            src_pieces = self.tokenizers.src.id_to_piece(ids[i])
            out[i] = [Translation(next(texts), src_pieces,
                                  self.tokenizers.tgt.id_to_piece(hyp.tokens), hyp.score,
                                  hyp.attention) for hyp in hyps]
        return [translations[0] for translations in out] if nbest is None else out

    def _texts(self, hyps: Sequence[Hypothesis]) -> list[str]:
        """The detokenized (and recased) text of each hypothesis."""
        texts = self.tokenizers.tgt.decode([h.tokens for h in hyps])
        if self.recaser is not None:
            texts = [self.recaser.recase(text) for text in texts]
        return texts

    def translate(self, sentences: Sequence[str], beam: Optional[int] = None,
                  line_offset: int = 0) -> list[str]:
        """One translation per sentence; an empty or blank sentence gives an empty string."""
        return [t.text for t in self.translate_detailed(sentences, beam, line_offset=line_offset)]

    def predict(self, lines: Sequence[str], line_offset: int = 0) -> list[str]:
        """``translate`` with the settings it was loaded with (the ``Predictor`` protocol)."""
        return self.translate(lines, line_offset=line_offset)

