"""Slot-value substitution: extra training utterances for a labelled corpus, made by replacing
the words of each slot with another value seen in training for a slot type of the same group
(``play the album journeyman`` -> ``play the album kind of blue``). The utterance's class and
its slots' types stay; only the values change, and the BIO tags follow the new value's length.

Within one slot type this shows the model more carrier phrases with more values. A group of
several types (for SNIPS, the titles: ``movie_name``, ``object_name``, ``track``, ``album``)
also lets a title of one kind stand in a phrase of another (``i d like to watch`` + a song
title), so the class has to come from the carrier phrase, not from how the title sounds.

With a slot lexicon (``seq2seq/data/lexicon.py``), whose training features are cross-fitted over
folds, the copies are drawn within those folds (``cross_fitted_substitutions``).
"""

from __future__ import annotations

import random
from typing import Optional, Sequence

from seq2seq.data.lexicon import SlotLexicon, WordFeatures, bio_spans, fold_assignment
from seq2seq.errors import ConfigError

Value = tuple[str, ...]


def slot_values(words: Sequence[Sequence[str]], tags: Sequence[Sequence[str]]
                ) -> dict[str, list[Value]]:
    """Each slot type's distinct values in the tagged utterances, in sorted order (so a seed
    draws the same values on every machine)."""
    values: dict[str, set[Value]] = {}
    for utterance, utterance_tags in zip(words, tags):
        for name, first, last in bio_spans(utterance_tags):
            values.setdefault(name, set()).add(tuple(utterance[first:last + 1]))
    return {name: sorted(found) for name, found in values.items()}


def substitution_pools(values: dict[str, list[Value]], groups: Sequence[Sequence[str]],
                       option: str = "topology.substitution_groups", strict: bool = True
                       ) -> dict[str, list[Value]]:
    """The values a slot of each type may take: those of every type in its group (a type in
    no group keeps its own). A group naming a type the training split does not tag, or a type
    in two groups, is an error naming ``option``; with ``strict=False`` (a part of the split,
    which may lack a rare type) a missing type only adds no values."""
    group_of: dict[str, int] = {}
    for index, group in enumerate(groups):
        for name in group:
            if name not in values and strict:
                raise ConfigError(f"{option}: slot type {name!r} is not tagged in the training "
                                  f"split (its types: {', '.join(sorted(values))})")
            if name in group_of:
                raise ConfigError(f"{option}: slot type {name!r} is in two groups")
            group_of[name] = index
    pools = {}
    for name, own in values.items():
        if name in group_of:
            members = groups[group_of[name]]
            pools[name] = sorted({v for member in members for v in values.get(member, ())})
        else:
            pools[name] = own
    return pools


def substitute_slots(words: Sequence[Sequence[str]], tags: Sequence[Sequence[str]],
                     labels: Optional[Sequence[str]], copies: int,
                     groups: Sequence[Sequence[str]] = (), seed: int = 0
                     ) -> tuple[list[list[str]], list[list[str]], Optional[list[str]]]:
    """``copies`` new utterances for each tagged utterance with at least one slot, every slot's
    words replaced by a value drawn uniformly from its type's pool (``substitution_pools``).
    Returns the new utterances only: their words, tags and classes (None without ``labels``)."""
    _check_copies(copies)
    pools = substitution_pools(slot_values(words, tags), groups)
    return _substitute(words, tags, labels, copies, pools, random.Random(seed))


def cross_fitted_substitutions(words: Sequence[Sequence[str]], tags: Sequence[Sequence[str]],
                               labels: Optional[Sequence[str]], copies: int,
                               groups: Sequence[Sequence[str]], types: Sequence[str],
                               folds: int, seed: int = 0, max_words: int = 6
                               ) -> tuple[list[list[str]], list[list[str]], Optional[list[str]],
                                          list[WordFeatures]]:
    """Substituted copies that keep the slot lexicon's cross-fitting honest: the training
    utterances are split into the folds of ``cross_fitted_features`` (same ``folds`` and
    ``seed``), each utterance's copies draw values from its own fold only, and their lexicon
    features come from the lexicon of the other folds, as the utterance's own do. So a copy's
    value matches its lexicon only when another fold has it too, as a real value does; drawn
    from the whole split, four values in five would match whatever their frequency, and the
    model would learn to trust a match more than new text allows. (Values are drawn uniformly
    from a fold's distinct values, as ``substitute_slots`` draws, so rare values, which other
    folds rarely hold, are drawn more often than they occur: copies match somewhat less often
    than real utterances.) Returns the copies' words, tags, classes (None without ``labels``)
    and lexicon features, fold after fold."""
    _check_copies(copies)
    substitution_pools(slot_values(words, tags), groups)  # the groups, checked on the whole split
    fold_of = fold_assignment(len(words), folds, seed)
    rng = random.Random(f"{seed}/substitutions")  # a stream of its own, not the folds' one
    out_words: list[list[str]] = []
    out_tags: list[list[str]] = []
    out_labels: list[str] = []
    out_features: list[WordFeatures] = []
    for fold in range(folds):
        inside = [i for i, f in enumerate(fold_of) if f == fold]
        outside = [i for i, f in enumerate(fold_of) if f != fold]
        fold_words, fold_tags = [words[i] for i in inside], [tags[i] for i in inside]
        pools = substitution_pools(slot_values(fold_words, fold_tags), groups, strict=False)
        new_words, new_tags, new_labels = _substitute(
            fold_words, fold_tags, None if labels is None else [labels[i] for i in inside],
            copies, pools, rng)
        lexicon = SlotLexicon.build([words[i] for i in outside], [tags[i] for i in outside],
                                    types, max_words)
        out_words += new_words
        out_tags += new_tags
        out_labels += new_labels or []
        out_features += [lexicon.features(w) for w in new_words]
    return out_words, out_tags, (out_labels if labels is not None else None), out_features


def _check_copies(copies: int) -> None:
    if copies < 0:
        raise ConfigError(f"topology.augment_copies={copies}: expected a number >= 0")


def _substitute(words: Sequence[Sequence[str]], tags: Sequence[Sequence[str]],
                labels: Optional[Sequence[str]], copies: int, pools: dict[str, list[Value]],
                rng: random.Random
                ) -> tuple[list[list[str]], list[list[str]], Optional[list[str]]]:
    """The copies of ``substitute_slots``, values drawn from ``pools`` with ``rng``."""
    new_words: list[list[str]] = []
    new_tags: list[list[str]] = []
    new_labels: list[str] = []
    for n, (utterance, utterance_tags) in enumerate(zip(words, tags)):
        spans = bio_spans(utterance_tags)
        if not spans:
            continue
        for _ in range(copies):
            out_words: list[str] = []
            out_tags: list[str] = []
            at = 0
            for name, first, last in spans:
                out_words += utterance[at:first]
                out_tags += utterance_tags[at:first]
                value = rng.choice(pools[name])
                out_words += value
                out_tags += [f"B-{name}"] + [f"I-{name}"] * (len(value) - 1)
                at = last + 1
            new_words.append(out_words + list(utterance[at:]))
            new_tags.append(out_tags + list(utterance_tags[at:]))
            if labels is not None:
                new_labels.append(labels[n])
    return new_words, new_tags, (new_labels if labels is not None else None)
