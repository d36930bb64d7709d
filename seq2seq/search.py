"""Batched decoding: greedy search, sampling and beam search.

Search sees a model only through ``Stepper``: ``start`` encodes a batch, ``step`` maps the previous
tokens and a state to next-token log-probabilities. States only need ``index_select(order)``, so
search can repeat, reorder and drop rows without knowing what they hold, and can be tested on
hand-made scores without a model. Sentences leave the batch as soon as they are finished.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Protocol, Sequence

import torch
from torch import Tensor, nn

from seq2seq.device import model_device, to_device
from seq2seq.errors import ConfigError, check_range
from seq2seq.models.decoder import DecoderState, Memory
from seq2seq.precision import autocast, resolve_precision
from seq2seq.sampling import Chooser
from seq2seq.tokenization import BOS, EOS, PAD


class Hypothesis(NamedTuple):
    tokens: list[int]             # output ids, without EOS
    score: float                  # log-probability, normalized by the length penalty
    attention: Optional[Tensor]   # [len(tokens) + 1, S] attention per output step (with EOS)


class SearchState(NamedTuple):
    decoder: DecoderState
    memory: Memory

    def index_select(self, order: Tensor) -> "SearchState":
        return SearchState(self.decoder.index_select(order), self.memory.index_select(order))


class Stepper(Protocol):
    def step(self, prev_tokens: Tensor, state) -> tuple[Tensor, object, Optional[Tensor]]:
        """prev_tokens: [N] -> log_probs [N, V], next state, attention [N, S] or None."""


class ModelStepper:
    """Adapts an EncoderDecoder to the ``Stepper`` protocol.

    A decoder whose output layer scores some ids only (``RNNDecoder.restrict_output``) is
    searched over those: tokens are then positions in ``output_ids`` (the special ids keep
    their own numbers), mapped to ids by ``token_ids`` at the end, which spares each step a
    scatter into the whole vocabulary. ``all_ids=True`` scores every id (ensemble members)."""

    def __init__(self, model, all_ids: bool = False) -> None:
        self.model = model
        self.output_ids = None if all_ids else getattr(model.decoder, "output_ids", None)

    def start(self, src: Tensor, src_len: Optional[Tensor]) -> SearchState:
        """Encode a batch (a class-conditioned generator takes its classes as ``src``, no lengths)."""
        memory, state = self.model.encode(src, src_len)
        return SearchState(state, memory)

    def token_ids(self, hypotheses: list[Hypothesis]) -> list[Hypothesis]:
        """Hypotheses of this stepper's tokens with vocabulary ids."""
        if self.output_ids is None:
            return hypotheses
        ids = self.output_ids.cpu()  # once, not a device round trip per hypothesis
        return [h._replace(tokens=ids[torch.tensor(h.tokens, dtype=torch.long)].tolist())
                for h in hypotheses]

    def step(self, prev_tokens: Tensor, state: SearchState):
        restricted = self.output_ids is not None
        if self.output_ids is not None:
            prev_tokens = self.output_ids[prev_tokens]
        out = self.model.decoder.step(prev_tokens, state.decoder, state.memory,
                                      all_ids=not restricted)
        # fp32 scores and attention whatever the model's precision: beam scores are sums
        attention = None if out.attention is None else out.attention.float()
        return (torch.log_softmax(out.logits.float(), dim=-1), SearchState(out.state, state.memory),
                attention)


class Ensemble(nn.Module):
    """Several translation models of the same vocabularies, decoded as one: each step's
    next-token distribution is the mean of the members' (fairseq's and OpenNMT's ensembles)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two models, got {len(members)}")
        self.members = nn.ModuleList(members)


class EnsembleState(NamedTuple):
    members: tuple  # one SearchState per member

    def index_select(self, order: Tensor) -> "EnsembleState":
        return EnsembleState(tuple(state.index_select(order) for state in self.members))


class EnsembleStepper:
    """Adapts an ``Ensemble`` to the ``Stepper`` protocol: log of the members' mean probability;
    the attention shown is the first member's."""

    def __init__(self, ensemble: Ensemble) -> None:
        # every member over every id: their output layers may keep different ids
        self.steppers = [ModelStepper(model, all_ids=True) for model in ensemble.members]

    def start(self, src: Tensor, src_len: Tensor) -> EnsembleState:
        return EnsembleState(tuple(stepper.start(src, src_len) for stepper in self.steppers))

    def token_ids(self, hypotheses: list[Hypothesis]) -> list[Hypothesis]:
        return hypotheses  # its tokens are vocabulary ids already

    def step(self, prev_tokens: Tensor, state: EnsembleState):
        outputs = [stepper.step(prev_tokens, member)
                   for stepper, member in zip(self.steppers, state.members)]
        log_probs = torch.stack([log_p for log_p, _, _ in outputs])
        mean = torch.logsumexp(log_probs, dim=0) - math.log(len(outputs))
        return mean, EnsembleState(tuple(s for _, s, _ in outputs)), outputs[0][2]


def stepper_for(model: nn.Module):
    """The ``Stepper`` that decodes ``model`` (an EncoderDecoder or an ``Ensemble`` of them, or a
    model that brings its own: an exported one run by onnxruntime, ``seq2seq/export``)."""
    own = getattr(model, "search_stepper", None)
    if callable(own):
        return own()
    return EnsembleStepper(model) if isinstance(model, Ensemble) else ModelStepper(model)


def max_output_lengths(src_len: Tensor, ratio: float, cap: int) -> Tensor:
    """Per-sentence output limit: ceil(ratio * source length), at most ``cap``, at least 1."""
    return torch.clamp(torch.ceil(src_len.float() * ratio).long(), min=1, max=cap)


def constrain(log_probs: Tensor, step: int, max_len: Tensor) -> Tensor:
    """Never emit PAD or BOS; force EOS once a row has ``max_len`` output tokens."""
    log_probs = log_probs.clone()
    log_probs[:, PAD] = -math.inf
    log_probs[:, BOS] = -math.inf
    at_limit = max_len <= step
    if at_limit.any():
        eos_only = torch.full_like(log_probs[0], -math.inf)
        eos_only[EOS] = 0.0
        log_probs[at_limit] = eos_only
    return log_probs


def length_penalty(length: int, alpha: float) -> float:
    """GNMT length penalty ((5 + |Y|) / 6) ** alpha (Wu et al., 2016, section 7)."""
    return ((5.0 + length) / 6.0) ** alpha


def most_likely(log_probs: Tensor) -> tuple[Tensor, Tensor]:
    return log_probs.max(dim=-1)


def greedy_search(stepper: Stepper, state, batch_size: int, max_len: Tensor,
                  return_attention: bool = False, choose: Chooser = most_likely
                  ) -> list[Hypothesis]:
    """Pick the most likely token at every step (or, with ``choose=sampler(...)``, a sampled
    one). max_len: [B] output limits, on the model's device (search's tensors go there too)."""
    device = max_len.device
    alive = torch.arange(batch_size, device=device)
    prev = torch.full((batch_size,), BOS, dtype=torch.long, device=device)
    tokens: list[list[int]] = [[] for _ in range(batch_size)]
    scores = [0.0] * batch_size
    attention: list[list[Tensor]] = [[] for _ in range(batch_size)]
    step = 0
    while len(alive):
        log_probs, state, attn = stepper.step(prev, state)
        best, prev = choose(constrain(log_probs, step, max_len[alive]))
        # one copy to the host per step, not one per sentence (each a GPU sync)
        for row, (sentence, token, score) in enumerate(zip(alive.tolist(), prev.tolist(),
                                                          best.tolist())):
            tokens[sentence].append(token)
            scores[sentence] += score
            if return_attention and attn is not None:
                attention[sentence].append(attn[row])
        running = prev != EOS
        if not running.all():
            keep = running.nonzero().squeeze(1)
            alive, prev, state = alive[keep], prev[keep], state.index_select(keep)
        step += 1
    return [Hypothesis(t[:-1], s, torch.stack(a).cpu() if a else None)
            for t, s, a in zip(tokens, scores, attention)]


def top_candidates(scores: Tensor, log_probs: Tensor, count: int) -> tuple[Tensor, Tensor, Tensor]:
    """The step policy of beam search: the ``count`` best continuations of each sentence.

    scores: [N, K] running log-probabilities; log_probs: [N*K, V].
    Returns candidate scores [N, count], the beam each extends [N, count], and its token [N, count].
    """
    n, k = scores.shape
    vocab = log_probs.size(-1)
    total = (scores.view(n * k, 1) + log_probs).view(n, k * vocab)
    cand_scores, flat = total.topk(min(count, k * vocab), dim=-1)
    return cand_scores, torch.div(flat, vocab, rounding_mode="floor"), flat % vocab


def beam_search(stepper: Stepper, state, batch_size: int, max_len: Tensor, beam: int,
                alpha: float = 0.0, return_attention: bool = False) -> list[Hypothesis]:
    """Keep the ``beam`` best prefixes of each sentence; a sentence is done when ``beam`` hypotheses
    have ended. Finished hypotheses are ranked by score / length_penalty(length, alpha); the best
    of each sentence is returned."""
    return [hyps[0] for hyps in beam_search_nbest(stepper, state, batch_size, max_len, beam,
                                                  alpha, return_attention, nbest=1)]


def beam_search_nbest(stepper: Stepper, state, batch_size: int, max_len: Tensor, beam: int,
                      alpha: float = 0.0, return_attention: bool = False, nbest: int = 1
                      ) -> list[list[Hypothesis]]:
    """``beam_search``, returning the ``nbest`` (<= ``beam``) best finished hypotheses of each
    sentence, best first: a list of at most ``nbest`` per sentence (fewer only when the search
    ran out of prefixes to extend, e.g. under a limit of one token), never empty."""
    check_range("beam", beam, 1)
    check_nbest(nbest, beam)
    k = beam
    device = max_len.device  # the model's: search's tensors live beside its states
    # Row r*k + j holds beam j of sentence r; only beam 0 is live at the start.
    state = state.index_select(torch.arange(batch_size, device=device).repeat_interleave(k))
    alive = torch.arange(batch_size, device=device)
    scores = torch.full((batch_size, k), -math.inf, device=device)
    scores[:, 0] = 0.0
    history = torch.full((batch_size * k, 0), BOS, dtype=torch.long, device=device)
    attn_history: Optional[Tensor] = None
    prev = torch.full((batch_size * k,), BOS, dtype=torch.long, device=device)
    beam_offsets = torch.arange(k, device=device)
    finished: list[list[Hypothesis]] = [[] for _ in range(batch_size)]
    step = 0
    while len(alive):
        n = len(alive)
        log_probs, state, attn = stepper.step(prev, state)
        log_probs = constrain(log_probs, step, max_len[alive].repeat_interleave(k))
        cand_scores, cand_beams, cand_tokens = top_candidates(scores, log_probs, 2 * k)
        # [n, 2k] the source row of each candidate
        rows = torch.arange(n, device=device).unsqueeze(1) * k + cand_beams
        if return_attention and attn is not None:
            attn_history = attn.unsqueeze(1) if attn_history is None else \
                torch.cat([attn_history, attn.unsqueeze(1)], dim=1)
        # Candidates ending in EOS among the top k are finished hypotheses.
        is_eos = (cand_tokens == EOS) & torch.isfinite(cand_scores)
        alive_list = alive.tolist()
        for i, j in is_eos[:, :k].nonzero().tolist():
            sentence = alive_list[i]
            if len(finished[sentence]) < k:
                row = int(rows[i, j])
                length = history.size(1) + 1
                finished[sentence].append(Hypothesis(
                    history[row].tolist(), float(cand_scores[i, j]) / length_penalty(length, alpha),
                    None if attn_history is None else attn_history[row].cpu()))
        # The k best candidates that did not end continue.
        cont_scores = cand_scores.masked_fill(is_eos, -math.inf)
        cont_scores, pick = cont_scores.topk(k, dim=-1)
        chosen_rows = rows.gather(1, pick).view(-1)
        chosen_tokens = cand_tokens.gather(1, pick).view(-1)
        done = torch.tensor([len(finished[s]) >= k for s in alive_list], dtype=torch.bool,
                            device=device)
        done |= ~torch.isfinite(cont_scores[:, 0])  # nothing left to extend
        keep = (~done).nonzero().squeeze(1)
        keep_rows = (keep.unsqueeze(1) * k + beam_offsets).view(-1)
        order = chosen_rows.index_select(0, keep_rows)
        history = torch.cat([history.index_select(0, order),
                             chosen_tokens.index_select(0, keep_rows).unsqueeze(1)], dim=1)
        if attn_history is not None:
            attn_history = attn_history.index_select(0, order)
        state = state.index_select(order)
        prev = history[:, -1]
        scores = cont_scores.index_select(0, keep)
        alive = alive.index_select(0, keep)
        step += 1
    # sorted() is stable: among equal scores the first to finish comes first, as max() picks it
    return [sorted(hyps, key=lambda h: h.score, reverse=True)[:nbest] for hyps in finished]


def check_nbest(nbest: int, beam: int, option: str = "nbest") -> None:
    """Raise ConfigError unless 1 <= nbest <= beam: beam search keeps ``beam`` hypotheses, so it
    cannot return more (sampling can: ``nbest`` independent samples)."""
    check_range(option, nbest, 1)
    if nbest > beam:
        raise ConfigError(f"{option}={nbest} is more than the beam width ({beam}); expected "
                          f"{option} <= beam (raise the beam, or sample: nbest samples)")


def sample_nbest(stepper: Stepper, state, batch_size: int, max_len: Tensor, nbest: int,
                 choose: Chooser, return_attention: bool = False) -> list[list[Hypothesis]]:
    """``nbest`` independent samples of each sentence (``choose``: a ``sampler``), best score
    first. The batch is encoded once and its rows repeated: row r*nbest + j is sample j of
    sentence r. max_len: [B] output limits."""
    check_range("nbest", nbest, 1)
    repeat = torch.arange(batch_size, device=max_len.device).repeat_interleave(nbest)
    samples = greedy_search(stepper, state.index_select(repeat), batch_size * nbest,
                            max_len.index_select(0, repeat), return_attention, choose)
    return [sorted(samples[r * nbest:(r + 1) * nbest], key=lambda h: h.score, reverse=True)
            for r in range(batch_size)]


def decode(model, src: Tensor, src_len: Tensor, beam: int = 1, alpha: float = 0.0,
           max_length_ratio: float = 2.0, max_length: int = 200,
           return_attention: bool = False, precision: str = "fp32",
           choose: Optional[Chooser] = None) -> list[Hypothesis]:
    """Translate a batch with an EncoderDecoder (or an ``Ensemble``): greedy when ``beam == 1``,
    else beam search; with ``choose`` (a ``sampler``), one sample per sentence (``beam`` unused).
    ``precision``: of the model's matrix multiplies (seq2seq/precision.py); scores are summed in
    fp32 either way. ``src`` and ``src_len`` go to the model's device, and search works there;
    the hypotheses come back on the CPU."""
    return [hyps[0] for hyps in decode_nbest(model, src, src_len, 1, beam, alpha,
                                             max_length_ratio, max_length, return_attention,
                                             precision, choose)]


def decode_nbest(model, src: Tensor, src_len: Tensor, nbest: int = 1, beam: int = 1,
                 alpha: float = 0.0, max_length_ratio: float = 2.0, max_length: int = 200,
                 return_attention: bool = False, precision: str = "fp32",
                 choose: Optional[Chooser] = None) -> list[list[Hypothesis]]:
    """``decode`` returning several hypotheses per sentence, best score first: beam search's
    ``nbest`` best (``nbest`` <= ``beam``; greedy search's one when both are 1), or with
    ``choose``, ``nbest`` independent samples. src: [B, S]; src_len: [B] -> B lists."""
    check_range("beam", beam, 1)
    if choose is None:
        check_nbest(nbest, beam)
    stepper = stepper_for(model)
    device = model_device(model)
    src, src_len = to_device(src, device), to_device(src_len, device)
    with torch.inference_mode(), autocast(resolve_precision(
            precision, "search.precision", device.type), device.type):
        state = stepper.start(src, src_len)
        limits = max_output_lengths(src_len, max_length_ratio, max_length)
        if choose is not None:
            lists = sample_nbest(stepper, state, src.size(0), limits, nbest, choose,
                                 return_attention)
        elif beam == 1:
            lists = [[h] for h in greedy_search(stepper, state, src.size(0), limits,
                                                return_attention)]
        else:
            lists = beam_search_nbest(stepper, state, src.size(0), limits, beam, alpha,
                                      return_attention, nbest)
    mapped = iter(stepper.token_ids([h for hyps in lists for h in hyps]))  # one call, not B
    return [[next(mapped) for _ in hyps] for hyps in lists]
