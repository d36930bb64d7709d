"""Drawing the next token instead of taking the most likely one: temperature, top-k and nucleus
(top-p) sampling, seeded for reproducible draws. ``search.py`` runs a ``Chooser`` step by step."""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import Tensor

from seq2seq.errors import ConfigError, check_range

# log_probs [N, V] -> (chosen log-probabilities [N], chosen ids [N])
Chooser = Callable[[Tensor], tuple[Tensor, Tensor]]


def nucleus_mask(log_probs: Tensor, top_p: float) -> Tensor:
    """True on the tokens outside the nucleus: the smallest set of most likely tokens whose
    probabilities sum to at least ``top_p`` (Holtzman et al., 2020, section 3.1). The most likely
    token is always kept. log_probs: [N, V] (normalized or not) -> [N, V] bool."""
    sorted_log_probs, order = log_probs.sort(dim=-1, descending=True)
    probs = torch.softmax(sorted_log_probs, dim=-1)
    # a token is in the nucleus when the mass of the tokens ranked above it is still short of p
    outside_sorted = probs.cumsum(dim=-1) - probs >= top_p
    return outside_sorted.scatter(-1, order, outside_sorted)


def sampler(temperature: float = 1.0, top_k: int = 0, generator: Optional[torch.Generator] = None,
            top_p: float = 1.0) -> Chooser:
    """Draw each token from the softmax of log_probs / temperature, among the top_k most likely
    tokens (all with top_k=0) and within the nucleus of mass top_p (all with top_p=1; applied
    after the temperature, as in fairseq and Hugging Face). Low temperatures approach greedy
    search; high ones, uniform. The chosen log-probabilities are the model's, unscaled."""
    check_range("temperature", temperature, 1e-6)
    check_range("top_k", top_k, 0)
    if not 0.0 < top_p <= 1.0:
        raise ConfigError(f"top_p={top_p!r} is out of range; expected a nucleus mass in (0, 1]")

    def choose(log_probs: Tensor) -> tuple[Tensor, Tensor]:
        scaled = log_probs / temperature
        if top_k:
            kth = scaled.topk(min(top_k, scaled.size(-1)), dim=-1).values[:, -1:]
            scaled = scaled.masked_fill(scaled < kth, -math.inf)
        if top_p < 1.0:
            scaled = scaled.masked_fill(nucleus_mask(scaled, top_p), -math.inf)
        ids = torch.multinomial(torch.softmax(scaled, dim=-1), 1, generator=generator).squeeze(1)
        return log_probs.gather(1, ids.unsqueeze(1)).squeeze(1), ids

    return choose


def seeded_generator(seed: Optional[int], device: torch.device) -> Optional[torch.Generator]:
    """A random generator on ``device`` (sampling draws there) seeded with ``seed``; None without
    a seed (torch's global generator: other draws on every run)."""
    return None if seed is None else torch.Generator(device).manual_seed(seed)
