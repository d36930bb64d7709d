"""The built-in corpus: English phrases with numbers written out, and their German or Chinese
translation (``data.tgt_lang=de`` or ``zh``).

German writes the units before the tens ("twenty-one" is "einundzwanzig", one-and-twenty), writes
numbers as one compound word, and inflects the article and the adjective by gender, so the task needs
reordering and agreement, and so exercises attention, while needing no files and no network.
Chinese writes numbers in characters by their own rules (``chinese_number``: 二十一, 三百零五),
puts a measure word chosen by the noun between the number and the noun (一只猫, 一座房子), and is
written without spaces, so its BLEU needs sacrebleu's ``zh`` tokenizer (``evaluation/bleu.py``).

    en: we have twenty-one green birds and a big house
    de: wir haben einundzwanzig grüne Vögel und ein großes Haus
    zh: 我们有二十一只绿鸟和一座大房子
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from num2words import num2words

from seq2seq.data.corpus import write_lines, write_text_atomic
from seq2seq.errors import ConfigError

# (english singular, english plural, german singular, german plural, german gender, chinese,
# chinese measure word)
NOUNS = [
    ("cat", "cats", "Katze", "Katzen", "f", "猫", "只"), ("dog", "dogs", "Hund", "Hunde", "m", "狗", "条"),
    ("house", "houses", "Haus", "Häuser", "n", "房子", "座"),
    ("apple", "apples", "Apfel", "Äpfel", "m", "苹果", "个"),
    ("car", "cars", "Auto", "Autos", "n", "车", "辆"), ("book", "books", "Buch", "Bücher", "n", "书", "本"),
    ("bird", "birds", "Vogel", "Vögel", "m", "鸟", "只"),
    ("flower", "flowers", "Blume", "Blumen", "f", "花", "朵"),
    ("chair", "chairs", "Stuhl", "Stühle", "m", "椅子", "把"),
    ("boat", "boats", "Boot", "Boote", "n", "船", "条"),
    ("tree", "trees", "Baum", "Bäume", "m", "树", "棵"),
    ("lamp", "lamps", "Lampe", "Lampen", "f", "灯", "盏"),
]
ADJECTIVES = [("red", "rot", "红"), ("blue", "blau", "蓝"), ("green", "grün", "绿"),
              ("small", "klein", "小"), ("big", "groß", "大"), ("old", "alt", "旧"),
              ("new", "neu", "新"), ("black", "schwarz", "黑")]
# Verbs that take the accusative, so "a dog" is "einen Hund".
SUBJECTS = [("i see", "ich sehe", "我看见"), ("we have", "wir haben", "我们有"),
            ("she buys", "sie kauft", "她买"), ("they paint", "sie malen", "他们画"),
            ("you want", "du willst", "你想要")]
TARGETS = ("de", "zh")  # the target languages of the built-in corpus; the source is English
# Indefinite article and adjective ending in the accusative singular, by gender.
ARTICLE = {"m": "einen", "f": "eine", "n": "ein"}
ADJ_ENDING = {"m": "en", "f": "e", "n": "es"}


def _english_number(n: int) -> str:
    return num2words(n, lang="en").replace(",", "")


CHINESE_DIGITS = "零一二三四五六七八九"
CHINESE_PLACES = ((1000, "千"), (100, "百"), (10, "十"), (1, ""))
CHINESE_GROUPS = ((10**8, "亿"), (10**4, "万"), (1, ""))  # Chinese groups digits by four


def _chinese_group(n: int) -> str:
    """1 <= n <= 9999 in characters; one 零 stands for any run of zeros between two digits."""
    out, zero = "", False
    for value, name in CHINESE_PLACES:
        digit = n // value % 10
        if digit:
            out += ("零" if zero else "") + CHINESE_DIGITS[digit] + name
            zero = False
        elif out:
            zero = True  # written only if a non-zero digit follows: 一千零五, but 一千
    return out


def chinese_number(n: int) -> str:
    """``n`` (0 <= n < 10**12) in Chinese characters, as it is read: 十, 二十一, 一百零五,
    一千零一十, 二万零五百, 十万.

    The standard rules: groups of four digits take 万 and 亿; a run of zeros inside the number is
    one 零, also between groups when the lower group is under a thousand (一万零一百); trailing
    zeros are not written; a number from 10 to 19 at the start drops its 一 (十一, but 一百一十).
    """
    if not 0 <= n < 10**12:
        raise ValueError(f"{n}: expected a number from 0 to 10**12 - 1")
    if n == 0:
        return CHINESE_DIGITS[0]
    out, zero = "", False
    for value, name in CHINESE_GROUPS:
        group = n // value % 10**4
        if not group:
            zero = zero or bool(out)
            continue
        if out and (zero or group < 1000):
            out += "零"
        out += _chinese_group(group) + name
        zero = False
    return out[1:] if out.startswith("一十") else out


def _chinese_count(n: int) -> str:
    """The number before a measure word: 两, not 二, counts two things (两只猫, but 二十二只猫)."""
    return "两" if n == 2 else chinese_number(n)


def _item(rng: random.Random, max_number: int) -> dict[str, str]:
    en_sg, en_pl, de_sg, de_pl, gender, zh_noun, measure = rng.choice(NOUNS)
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
    # Chinese has no plural: the noun stays, the measure word follows the number.
    zh = _chinese_count(n) + measure + (adjective[2] if adjective else "") + zh_noun
    return {"en": " ".join(en), "de": " ".join(de), "zh": zh}


# How each language lists items: "a, b and c"; "a, b und c"; "a、b和c" (no spaces in Chinese).
LIST_SEPARATORS = {"en": (", ", " and "), "de": (", ", " und "), "zh": ("、", "和")}


def _listed(items: list[str], lang: str) -> str:
    comma, last = LIST_SEPARATORS[lang]
    return comma.join(items[:-1]) + last + items[-1] if len(items) > 1 else items[0]


def make_pair(rng: random.Random, max_items: int = 3, max_number: int = 9999,
              tgt_lang: str = "de") -> tuple[str, str]:
    """One random English sentence and its translation into ``tgt_lang`` (``TARGETS``); the
    random draws do not depend on ``tgt_lang``, so the targets translate the same sentences."""
    if tgt_lang not in TARGETS:
        raise ConfigError(f"data.tgt_lang={tgt_lang!r}: the built-in corpus translates into "
                          f"{' or '.join(TARGETS)}")
    subject = dict(zip(("en", "de", "zh"), rng.choice(SUBJECTS)))
    items = [_item(rng, max_number) for _ in range(rng.randint(1, max_items))]
    space = "" if tgt_lang == "zh" else " "  # Chinese is written without spaces
    return (f"{subject['en']} {_listed([i['en'] for i in items], 'en')}",
            f"{subject[tgt_lang]}{space}{_listed([i[tgt_lang] for i in items], tgt_lang)}")


def write_number_corpus(
    root: str | Path, sizes: dict[str, int], seed: int = 1, max_items: int = 3,
    max_number: int = 9999, src_lang: str = "en", tgt_lang: str = "de",
) -> Path:
    """Write ``{root}/{split}.{en,de}`` (or ``.zh``, ``tgt_lang``) for each split in ``sizes``,
    unless the folder already holds a corpus generated with the same settings. Test and validation
    sentences never occur in training.
    """
    if src_lang != "en":
        raise ConfigError(f"data.src_lang={src_lang!r}: the built-in corpus is English to "
                          f"{' or '.join(TARGETS)}; expected en")
    if tgt_lang not in TARGETS:
        raise ConfigError(f"data.tgt_lang={tgt_lang!r}: the built-in corpus translates into "
                          f"{' or '.join(TARGETS)}")
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
            src, tgt = make_pair(rng, max_items, max_number, tgt_lang)
            if src in seen:  # no duplicates within a split, no held-out sentence in training
                continue
            seen.add(src)
            pairs.append((src, tgt))
        for lang, side in ((src_lang, 0), (tgt_lang, 1)):
            write_lines(root / f"{split}.{lang}", [p[side] for p in pairs])
    write_text_atomic(meta, json.dumps(settings))
    return root
