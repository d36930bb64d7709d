#!/usr/bin/env python
"""Write the English side of the built-in number phrases as a labelled corpus in the SNIPS layout,
so that the classify (N vs 1), tag (N vs N) and generate (1 vs N) topologies can be tried without
downloading anything (docs/learn/topologies.md)::

    python docs/learn/labelled_numbers.py runs/learn/numbers_labelled

Each utterance (``seq.in``) is a phrase of the built-in corpus (``seq2seq/data/synthetic.py``),
its class (``label``) is the verb (``see``, ``have``, ``buy``, ``paint``, ``want``), and its tags
(``seq.out``, one BIO tag a word) mark the numbers, adjectives and nouns::

    we    have  twenty-one green        birds  and  a  dog
    O     O     B-number   B-adjective  B-noun O    O  B-noun      label: have
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from num2words import num2words

from seq2seq.data.synthetic import ADJECTIVES, NOUNS, SUBJECTS

SPLITS = {"train": 6000, "valid": 300, "test": 300}


def tagged_item(rng: random.Random) -> tuple[list[str], list[str]]:
    """One noun phrase (``three hundred and five red cats``) and its BIO tags."""
    singular, plural = rng.choice(NOUNS)[:2]
    adjective = rng.choice(ADJECTIVES)[0] if rng.random() < 0.5 else None
    n = rng.randint(1, rng.choice([12, 99, 999, 9999]))
    if n == 1:
        first = adjective or singular
        words = ["an" if first[0] in "aeiou" else "a"]
        tags = ["O"]
    else:
        words = num2words(n, lang="en").replace(",", "").split()
        tags = ["B-number"] + ["I-number"] * (len(words) - 1)
    if adjective:
        words.append(adjective)
        tags.append("B-adjective")
    words.append(singular if n == 1 else plural)
    tags.append("B-noun")
    return words, tags


def tagged_utterance(rng: random.Random) -> tuple[str, str, str]:
    """(words, tags, class) of one utterance."""
    subject = rng.choice(SUBJECTS)[0].split()  # "we have"
    words, tags = list(subject), ["O"] * len(subject)
    for i in range(rng.randint(1, 3)):
        if i:
            words.append("and")
            tags.append("O")
        item_words, item_tags = tagged_item(rng)
        words += item_words
        tags += item_tags
    verb = subject[-1].removesuffix("s") if subject[-1] != "has" else "have"  # "buys" -> "buy"
    return " ".join(words), " ".join(tags), verb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="the folder to write {train,valid,test}/{seq.in,seq.out,label} into")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="a twentieth of the utterances, for tests")
    args = parser.parse_args()
    sizes = {split: size // 20 for split, size in SPLITS.items()} if args.smoke else SPLITS
    rng = random.Random(args.seed)
    seen: set[str] = set()
    for split, size in sizes.items():
        rows: list[tuple[str, str, str]] = []
        while len(rows) < size:
            row = tagged_utterance(rng)
            if row[0] not in seen:  # no test utterance in training
                seen.add(row[0])
                rows.append(row)
        folder = Path(args.root) / split
        folder.mkdir(parents=True, exist_ok=True)
        for name, column in (("seq.in", 0), ("seq.out", 1), ("label", 2)):
            (folder / name).write_text("".join(r[column] + "\n" for r in rows), encoding="utf-8")
        print(f"{folder}: {size} utterances, e.g. {rows[0][0]!r} / {rows[0][2]}")


if __name__ == "__main__":
    main()
