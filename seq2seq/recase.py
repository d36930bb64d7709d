"""Put the capitals back into lowercased text: the output of a model trained with case folding.

A model trained on lowercased text (``tokenizer.normalization=nmt_nfkc_cf``) spends none of its
capacity on case, which on Multi30k is worth more BLEU than the case it cannot write
(BENCHMARKS.md); ``tokenizer.recase=true`` then restores the case of its output. Each word takes
the written form it has most often in the cased training targets after the same two words,
backing off to the same one word and then to the word alone; a word never seen takes the case of
the longest seen word it ends with (a German compound is written like its head:
"trockenblumensortiment" like "sortiment"); and the line's first word starts with a capital when
most training lines do. This is the n-gram half of the classic SMT recaser (Moses's ``recaser``,
an HMM over the same counts) with a greedy left-to-right choice. On Multi30k's German validation
set it recases the lowercased references to 96.7 BLEU of themselves (94.2 without the compound
rule), and a model's lowercased test translations lose 0.55 BLEU to case (40.57 -> 40.02).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any, Iterable

# Words and single punctuation marks: the units the casing model counts and looks back over.
TOKEN = re.compile(r"(\w+)|[^\w\s]")
ORDER = 3  # the word and the two before it
START = "<s>"
MIN_HEAD = 3  # the shortest word ending that can give an unseen word its case


def _contexts(previous: list[str], word: str) -> list[str]:
    """Lookup keys for ``word`` after the lowercased ``previous`` tokens, longest context first."""
    return [" ".join([*previous[len(previous) - n:], word]) if n else word
            for n in range(ORDER - 1, -1, -1)]


class Recaser:
    """A casing model. ``forms``: for a context key (``"w"``, ``"p w"`` or ``"pp p w"``,
    lowercased), the written form of ``w`` to use; only the keys whose choice differs from the
    shorter context's are kept, so the table is small and its answers are those of the full
    counts. ``words``: every word seen (lowercased), for the heads of unseen words.
    ``first_capital``: whether a line's first word is capitalised."""

    def __init__(self, forms: dict[str, str], words: Iterable[str], first_capital: bool) -> None:
        self.forms, self.words, self.first_capital = forms, frozenset(words), first_capital

    @classmethod
    def fit(cls, lines: Iterable[str]) -> "Recaser":
        """Count the written forms of every word in ``lines`` (cased text) in each context. A
        line's first word is left out: its capital says where it stands, not what it is."""
        counts: dict[str, Counter] = defaultdict(Counter)
        first_letters: Counter = Counter()  # True / False: lines whose first letter is a capital
        for line in lines:
            previous = [START] * (ORDER - 1)
            for position, match in enumerate(TOKEN.finditer(line)):
                token = match.group()
                lowered = token.lower()
                if position == 0:
                    if token[0].isupper() or token[0].islower():  # a letter, not a digit or mark
                        first_letters[token[0].isupper()] += 1
                else:
                    for key in _contexts(previous, lowered):
                        counts[key][token] += 1
                previous = [*previous[1:], lowered]
        best = {key: forms.most_common(1)[0][0] for key, forms in counts.items()}
        forms = {}
        for key, form in best.items():
            shorter = key.split(" ", 1)[1] if " " in key else None
            backoff = _backoff(best, shorter) if shorter else key
            if form != backoff:
                forms[key] = form
        return cls(forms, (key for key in best if " " not in key),
                   first_letters[True] > first_letters[False])

    def recase(self, line: str) -> str:
        """``line`` with each word in its most likely written form; everything else (spacing,
        punctuation, words never seen) exactly as it was. Lowercasing the result gives back the
        lowercase of ``line``."""
        out, end = [], 0
        previous = [START] * (ORDER - 1)
        first_word = True
        for match in TOKEN.finditer(line):
            token = match.group()
            lowered = token.lower()
            form = next((self.forms[key] for key in _contexts(previous, lowered)
                         if key in self.forms), None) or self._unseen(token, lowered)
            if first_word and match.group(1):  # a word, not a punctuation mark
                if self.first_capital:
                    form = _capitalised(form)
                first_word = False
            out += [line[end:match.start()], form]
            end = match.end()
            previous = [*previous[1:], lowered]
        out.append(line[end:])
        return "".join(out)

    def _unseen(self, token: str, lowered: str) -> str:
        """``token`` as it is, or capitalised when it is a word never seen whose longest seen
        ending is written with a capital."""
        if lowered in self.words or not token.isalpha():
            return token
        for start in range(1, len(lowered) - MIN_HEAD + 1):
            head = lowered[start:]
            if head in self.words:
                capital = self.forms.get(head, head)[:1].isupper()
                return _capitalised(token) if capital else token
        return token

    def state_dict(self) -> dict[str, Any]:
        """The tables, as plain strings (stored in checkpoints)."""
        return {"forms": dict(self.forms), "words": sorted(self.words),
                "first_capital": self.first_capital}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "Recaser":
        return cls(dict(state["forms"]), state["words"], bool(state["first_capital"]))


def _capitalised(word: str) -> str:
    """``word`` with its first letter a capital and the rest as it was."""
    return word[:1].upper() + word[1:]


def _backoff(best: dict[str, str], key: str) -> str:
    """The form the full counts give for ``key``'s word when ``key`` itself is not a context
    seen in training: the longest shorter context that was, else the word itself."""
    while key not in best and " " in key:
        key = key.split(" ", 1)[1]
    return best.get(key, key)
