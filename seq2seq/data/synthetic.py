"""The built-in corpus: English phrases with numbers written out, and their German translation.

German writes the units before the tens ("twenty-one" is "einundzwanzig", one-and-twenty), writes
numbers as one compound word, and inflects the article and the adjective by gender, so the task needs
reordering and agreement, and so exercises attention, while needing no files and no network.

    en: we have twenty-one green birds and a big house
    de: wir haben einundzwanzig grüne Vögel und ein großes Haus
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from num2words import num2words

from seq2seq.data.corpus import write_lines, write_text_atomic

# (english singular, english plural, german singular, german plural, german gender)
NOUNS = [
    ("cat", "cats", "Katze", "Katzen", "f"), ("dog", "dogs", "Hund", "Hunde", "m"),
    ("house", "houses", "Haus", "Häuser", "n"), ("apple", "apples", "Apfel", "Äpfel", "m"),
    ("car", "cars", "Auto", "Autos", "n"), ("book", "books", "Buch", "Bücher", "n"),
    ("bird", "birds", "Vogel", "Vögel", "m"), ("flower", "flowers", "Blume", "Blumen", "f"),
    ("chair", "chairs", "Stuhl", "Stühle", "m"), ("boat", "boats", "Boot", "Boote", "n"),
    ("tree", "trees", "Baum", "Bäume", "m"), ("lamp", "lamps", "Lampe", "Lampen", "f"),
]
ADJECTIVES = [("red", "rot"), ("blue", "blau"), ("green", "grün"), ("small", "klein"),
              ("big", "groß"), ("old", "alt"), ("new", "neu"), ("black", "schwarz")]
# Verbs that take the accusative, so "a dog" is "einen Hund".
SUBJECTS = [("i see", "ich sehe"), ("we have", "wir haben"), ("she buys", "sie kauft"),
            ("they paint", "sie malen"), ("you want", "du willst")]
# Indefinite article and adjective ending in the accusative singular, by gender.
ARTICLE = {"m": "einen", "f": "eine", "n": "ein"}
ADJ_ENDING = {"m": "en", "f": "e", "n": "es"}


def _english_number(n: int) -> str:
    return num2words(n, lang="en").replace(",", "")


def _item(rng: random.Random, max_number: int) -> tuple[str, str]:
    en_sg, en_pl, de_sg, de_pl, gender = rng.choice(NOUNS)
    adjective = rng.choice(ADJECTIVES) if rng.random() < 0.5 else None
    # Small numbers are common in text; a share of large ones forces the model to compose.
    ceiling = rng.choice([12, 99, 999, max_number])
    n = rng.randint(1, max(1, min(ceiling, max_number)))
    if n == 1:
        first = adjective[0] if adjective else en_sg
        en = ["an" if first[0] in "aeiou" else "a"] + ([adjective[0]] if adjective else []) + [en_sg]
        de = [ARTICLE[gender]] + ([adjective[1] + ADJ_ENDING[gender]] if adjective else []) + [de_sg]
    else:
        en = [_english_number(n)] + ([adjective[0]] if adjective else []) + [en_pl]
        de = [num2words(n, lang="de")] + ([adjective[1] + "e"] if adjective else []) + [de_pl]
    return " ".join(en), " ".join(de)


def make_pair(rng: random.Random, max_items: int = 3, max_number: int = 9999) -> tuple[str, str]:
    """One random English/German sentence pair."""
    subject_en, subject_de = rng.choice(SUBJECTS)
    items = [_item(rng, max_number) for _ in range(rng.randint(1, max_items))]
    en_items, de_items = [i[0] for i in items], [i[1] for i in items]
    if len(items) > 1:
        en_items = [", ".join(en_items[:-1]) + " and " + en_items[-1]]
        de_items = [", ".join(de_items[:-1]) + " und " + de_items[-1]]
    return f"{subject_en} {en_items[0]}", f"{subject_de} {de_items[0]}"


def write_number_corpus(
    root: str | Path, sizes: dict[str, int], seed: int = 1, max_items: int = 3,
    max_number: int = 9999, src_lang: str = "en", tgt_lang: str = "de",
) -> Path:
    """Write ``{root}/{split}.{en,de}`` for each split in ``sizes``, unless the folder already holds
    a corpus generated with the same settings. Test and validation sentences never occur in training.
    """
    root = Path(root).expanduser()
    settings = {"sizes": dict(sizes), "seed": seed, "max_items": max_items,
                "max_number": max_number, "langs": [src_lang, tgt_lang], "version": 2}
    meta = root / "corpus.json"
    if meta.is_file() and json.loads(meta.read_text()) == settings:
        return root
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    seen: set[str] = set()
    # Held-out splits first, so training pairs can be drawn avoiding them.
    for split in sorted(sizes, key=lambda s: s == "train"):
        pairs: list[tuple[str, str]] = []
        while len(pairs) < sizes[split]:
            src, tgt = make_pair(rng, max_items, max_number)
            if src in seen:  # no duplicates within a split, no held-out sentence in training
                continue
            seen.add(src)
            pairs.append((src, tgt))
        for lang, side in ((src_lang, 0), (tgt_lang, 1)):
            write_lines(root / f"{split}.{lang}", [p[side] for p in pairs])
    write_text_atomic(meta, json.dumps(settings))
    return root
