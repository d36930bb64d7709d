"""Decoding tag sequences: BIO constraints, Viterbi, and joint class + tag decoding.

Hard constraints are additive scores (0 where a move is allowed, -inf where not); a CRF
(``models/crf.py``) adds its learned scores to them (``CRF.decoding_scores``).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor

ClassSlots = dict[str, list[str]]  # class -> the slot types seen with it in training


def bio_transitions(names: Sequence[str]) -> tuple[Tensor, Tensor]:
    """Allowed BIO moves as additive scores (0 or -inf): ``I-x`` only after ``B-x`` or ``I-x``,
    and never first. Returns (start [T], transitions [T_prev, T_next])."""
    def inside_of(name: str) -> Optional[str]:
        return name[2:] if name.startswith("I-") else None

    size = len(names)
    start = torch.tensor([-math.inf if inside_of(n) else 0.0 for n in names])
    moves = torch.zeros(size, size)
    for j, name in enumerate(names):
        slot = inside_of(name)
        if slot is not None:
            for i, prev in enumerate(names):
                if prev[2:] != slot or prev[:2] not in ("B-", "I-"):
                    moves[i, j] = -math.inf
    return start, moves


def best_paths(log_probs: Tensor, mask: Tensor, start: Tensor, moves: Tensor,
               end: Optional[Tensor] = None) -> tuple[list[list[int]], Tensor]:
    """The best tag sequence of each row and its score [B]: per-word scores log_probs [B, W, T]
    (mask [B, W]) plus the scores of starting on a tag [T], of each move [T_prev, T_next] and of
    ending on a tag [T] (hard constraints are -inf there; a CRF adds its learned scores)."""
    score = start + log_probs[:, 0]                      # [B, T]
    back = []
    for t in range(1, log_probs.size(1)):
        candidates = score.unsqueeze(2) + moves          # [B, T_prev, T_next]
        best, previous = candidates.max(dim=1)
        live = mask[:, t].unsqueeze(1)
        score = torch.where(live, best + log_probs[:, t], score)
        stay = torch.arange(score.size(1), device=score.device).expand_as(previous)
        back.append(torch.where(live, previous, stay))
    if end is not None:
        score = score + end
    paths = []
    for row in range(log_probs.size(0)):
        tag = int(score[row].argmax())
        path = [tag]
        for step in reversed(back):
            tag = int(step[row, tag])
            path.append(tag)
        paths.append(path[::-1][: int(mask[row].sum())])
    return paths, score.max(dim=-1).values


def viterbi(log_probs: Tensor, mask: Tensor, start: Tensor, moves: Tensor,
            end: Optional[Tensor] = None) -> list[list[int]]:
    """The best tag sequence of each row (see ``best_paths``)."""
    return best_paths(log_probs, mask, start, moves, end)[0]


def class_slots(labels: Sequence[str], tags: Sequence[Sequence[str]]) -> ClassSlots:
    """The slot types (``x`` of ``B-x``/``I-x``) that occur with each class in a training split."""
    seen: dict[str, set[str]] = {label: set() for label in labels}
    for label, row in zip(labels, tags, strict=True):
        seen[label].update(t[2:] for t in row if t[:2] in ("B-", "I-"))
    return {label: sorted(slots) for label, slots in seen.items()}


def class_tag_scores(slots: ClassSlots, class_names: Sequence[str], tag_names: Sequence[str]
                     ) -> Tensor:
    """[C, T] additive scores: 0 where a tag may go with a class (O, and the B-/I- tags of the
    slot types seen with it), -inf elsewhere."""
    allowed = torch.zeros(len(class_names), len(tag_names))
    for c, name in enumerate(class_names):
        kept = set(slots.get(name, ()))
        for t, tag in enumerate(tag_names):
            if tag[:2] in ("B-", "I-") and tag[2:] not in kept:
                allowed[c, t] = -math.inf
    return allowed


def joint_decode(label_logits: Tensor, tag_scores: Tensor, mask: Tensor, start: Tensor,
                 moves: Tensor, end: Optional[Tensor], allowed: Tensor
                 ) -> tuple[list[int], list[list[int]]]:
    """The class and tag sequence that maximise log p(class) + the tag sequence's score, among
    the tag sequences whose slots were seen with that class in training (``allowed`` [C, T]).

    A class and tags that contradict each other (a ``movie_name`` slot in a ``SearchCreativeWork``
    query) cannot both be chosen; each output can correct the other. One Viterbi pass per class.
    """
    batch, classes = label_logits.shape
    log_p = torch.log_softmax(label_logits, dim=-1)
    scores = (tag_scores.unsqueeze(1) + allowed[None, :, None, :]).flatten(0, 1)  # [B*C, W, T]
    paths, path_scores = best_paths(scores, mask.repeat_interleave(classes, dim=0), start, moves, end)
    chosen = (log_p + path_scores.view(batch, classes)).argmax(dim=-1).tolist()
    return chosen, [paths[row * classes + c] for row, c in enumerate(chosen)]
