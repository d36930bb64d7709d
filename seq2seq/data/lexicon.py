"""A slot lexicon: the word sequences that a training split tags as slot values, by slot type
(``the refugee playlist`` -> ``playlist``; ``seychelles`` -> ``country``), as word features for
a tagger (a gazetteer built from the training data alone, no outside lists).

Each word of an utterance gets the ids of the (slot type, B or I) pairs of every lexicon entry
whose words it starts or continues. In training, the features of an utterance come from a
lexicon of the *other* folds of the training split (``cross_fitted_features``): built from all
of it, every training span would be in the lexicon and the model would learn to trust a match
blindly, while on new text only some slot values have been seen before.
"""

from __future__ import annotations

import random
from typing import Any, Sequence

WordFeatures = list[list[int]]  # per word, the ids (from 1) of its active lexicon features


def bio_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(slot type, first word, last word) of each slot in a BIO tag sequence; an ``I-x`` that
    does not continue an ``x`` slot starts one, as conlleval reads it."""
    spans: list[tuple[str, int, int]] = []
    current: list | None = None
    for i, tag in enumerate(tags):
        kind, _, name = tag.partition("-")
        if kind == "I" and current is not None and current[0] == name:
            current[2] = i
            continue
        if current is not None:
            spans.append(tuple(current))
            current = None
        if kind in ("B", "I") and name:
            current = [name, i, i]
    if current is not None:
        spans.append(tuple(current))
    return spans


class SlotLexicon:
    """Slot values seen in training (lowercased word tuples) and their slot types."""

    def __init__(self, types: Sequence[str], entries: dict[tuple[str, ...], set[str]],
                 max_words: int = 6) -> None:
        self.types = list(types)
        self.type_index = {t: i for i, t in enumerate(self.types)}
        self.entries = {k: v for k, v in entries.items() if len(k) <= max_words}
        self.max_words = max_words

    @classmethod
    def build(cls, words: Sequence[Sequence[str]], tags: Sequence[Sequence[str]],
              types: Sequence[str] | None = None, max_words: int = 6) -> "SlotLexicon":
        """The lexicon of tagged utterances; ``types`` fixes the feature ids (all slot types of
        the training split), so lexicons of different folds share them."""
        entries: dict[tuple[str, ...], set[str]] = {}
        found: set[str] = set()
        for utterance, utterance_tags in zip(words, tags):
            for name, first, last in bio_spans(utterance_tags):
                key = tuple(w.lower() for w in utterance[first:last + 1])
                entries.setdefault(key, set()).add(name)
                found.add(name)
        return cls(sorted(found) if types is None else types, entries, max_words)

    @property
    def num_features(self) -> int:
        """Feature ids run from 1 to this (0 pads): a B and an I feature per slot type."""
        return 2 * len(self.types)

    def features(self, words: Sequence[str]) -> WordFeatures:
        """Per word, the sorted ids of the (type, B/I) features of the entries covering it."""
        lowered = [w.lower() for w in words]
        active: list[set[int]] = [set() for _ in words]
        for first in range(len(words)):
            for last in range(first, min(len(words), first + self.max_words)):
                for name in self.entries.get(tuple(lowered[first:last + 1]), ()):
                    index = self.type_index.get(name)
                    if index is None:
                        continue
                    active[first].add(2 * index + 1)
                    for inside in range(first + 1, last + 1):
                        active[inside].add(2 * index + 2)
        return [sorted(ids) for ids in active]

    def state_dict(self) -> dict[str, Any]:
        """Plain lists, so a checkpoint holding it loads with ``weights_only``."""
        return {"types": self.types, "max_words": self.max_words,
                "entries": [[list(k), sorted(v)] for k, v in sorted(self.entries.items())]}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "SlotLexicon":
        entries = {tuple(k): set(v) for k, v in state["entries"]}
        return cls(state["types"], entries, state["max_words"])


def fold_assignment(count: int, folds: int, seed: int = 0) -> list[int]:
    """The fold (0 .. folds-1) of each of ``count`` training utterances, at random, seeded: the
    cross-fitting of ``cross_fitted_features`` and of the substituted copies that go with it."""
    if folds < 2:
        raise ValueError(f"cross-fitting needs at least 2 folds, got {folds}")
    rng = random.Random(seed)
    return [rng.randrange(folds) for _ in range(count)]


def cross_fitted_features(words: Sequence[Sequence[str]], tags: Sequence[Sequence[str]],
                          types: Sequence[str], folds: int = 5, seed: int = 0,
                          max_words: int = 6) -> list[WordFeatures]:
    """Each training utterance's lexicon features from a lexicon of the other ``folds - 1``
    folds (utterances assigned to folds at random, seeded)."""
    fold_of = fold_assignment(len(words), folds, seed)
    out: list[WordFeatures] = [[] for _ in words]
    for fold in range(folds):
        rest = [i for i, f in enumerate(fold_of) if f != fold]
        lexicon = SlotLexicon.build([words[i] for i in rest], [tags[i] for i in rest], types,
                                    max_words)
        for i, f in enumerate(fold_of):
            if f == fold:
                out[i] = lexicon.features(words[i])
    return out
