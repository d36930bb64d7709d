"""n-best lists: the Moses format the translate and evaluate tools write, and their oracle.

A list holds the N best translations of one input (``Translator.translate_detailed(...,
nbest=N)``), one line each, best first, as Moses, fairseq, OpenNMT-py and Marian print them:
    SENT_INDEX ||| hypothesis ||| score
SENT_INDEX is the 0-based input line and score the hypothesis's log-probability under the model
(beam search: divided by the length penalty). The oracle of a set of lists is the best
hypothesis of each by sentence chrF against its reference: a measure of what reranking the lists
could gain (the evaluate tool's --nbest reports its BLEU and chrF).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence

from seq2seq.data.corpus import read_lines, write_text_atomic
from seq2seq.errors import ConfigError, DataError
from seq2seq.evaluation.bleu import score_corpus, sentence_chrf
from seq2seq.evaluation.report import write_report
from seq2seq.search import check_nbest
from seq2seq.topologies.base import EvaluationRequest
from seq2seq.translate import Translation, Translator, comparable_references

SEPARATOR = " ||| "  # Moses n-best lists' field separator


class NbestEntry(NamedTuple):
    sentence: int  # the 0-based input line
    text: str      # the hypothesis
    score: float   # its log-probability


def nbest_line(index: int, text: str, score: float) -> str:
    """One line of an n-best list, with its newline (a newline in ``text`` becomes a space)."""
    return f"{index}{SEPARATOR}{text.replace(chr(10), ' ')}{SEPARATOR}{score:.6f}\n"


def parse_nbest_line(line: str, where: str = "n-best line") -> NbestEntry:
    """The fields of a line written by ``nbest_line``; DataError naming ``where`` otherwise."""
    fields = line.rstrip("\n").split(SEPARATOR)
    try:
        # the hypothesis may itself hold the separator: the index is first, the score last
        return NbestEntry(int(fields[0]), SEPARATOR.join(fields[1:-1]), float(fields[-1]))
    except (ValueError, IndexError):
        raise DataError(f"{where}: {line.rstrip()!r}; expected 'SENT_INDEX ||| hypothesis ||| "
                        "score'") from None


def write_nbest(path: str | Path, lists: Sequence[Sequence[Translation]],
                first_index: int = 0) -> Path:
    """Write the lists (one per input line, numbered from ``first_index``) atomically."""
    return write_text_atomic(path, "".join(nbest_line(index, t.text, t.score)
                                           for index, translations in enumerate(lists, first_index)
                                           for t in translations))


def oracle(lists: Sequence[Sequence[Translation]], references: Sequence[str]) -> list[str]:
    """The best hypothesis of each list by sentence chrF against its reference (the first on a
    tie; an empty list gives an empty line)."""
    best = []
    for translations, reference in zip(lists, references, strict=True):
        texts = [t.text for t in translations] or [""]
        scores = sentence_chrf(texts, [reference] * len(texts))
        best.append(texts[max(range(len(texts)), key=scores.__getitem__)])
    return best


class NbestRecorder:
    """A ``Translator`` whose ``translate`` decodes the ``nbest`` best translations of each
    sentence, keeps the lists (``lists``, in call order) and returns the best of each: what the
    translator returns without n-best (the lists are sorted by score). Other attributes are the
    translator's."""

    def __init__(self, translator: Translator, nbest: int) -> None:
        self.translator, self.nbest = translator, nbest
        self.lists: list[list[Translation]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.translator, name)

    def translate(self, sentences: Sequence[str], beam: Optional[int] = None,
                  line_offset: int = 0) -> list[str]:
        lists = self.translator.translate_detailed(sentences, beam, line_offset=line_offset,
                                                   nbest=self.nbest)
        self.lists.extend(lists)
        return [translations[0].text for translations in lists]

    def predict(self, lines: Sequence[str], line_offset: int = 0) -> list[str]:
        return self.translate(lines, line_offset=line_offset)


def nbest_recorder(predictor: Any, nbest: Optional[int]) -> Optional[NbestRecorder]:
    """The evaluate tool's ``--nbest``: None without it, else a recorder of ``predictor``, which
    must be a ``Translator`` whose search can give ``nbest`` hypotheses (ConfigError otherwise)."""
    if nbest is None:
        return None
    if not isinstance(predictor, Translator):
        raise ConfigError(f"--nbest {nbest}: n-best lists are of translation checkpoints; this "
                          "one predicts another kind of output")
    if not predictor.search.sampling:
        check_nbest(nbest, predictor.search.beam, "--nbest")
    return NbestRecorder(predictor, nbest)


def report_nbest(recorder: NbestRecorder, report: dict[str, Any], request: EvaluationRequest
                 ) -> list[str]:
    """Write the recorded lists to ``nbest.txt`` beside the report, score their oracle with the
    report's BLEU tokenizer, add both to the report (written again) and return the lines the
    evaluate tool prints for them."""
    path = write_nbest(request.report_dir / "nbest.txt", recorder.lists)
    references = comparable_references(read_lines(request.ref, allow_empty=True),
                                       recorder.writes_lowercase)
    scores = score_corpus(oracle(recorder.lists, references), references,
                          tokenize=request.tokenize)
    report.update(nbest=recorder.nbest, nbest_file=path.name, oracle_by="sentence chrF",
                  oracle_bleu=round(scores.bleu, 2), oracle_chrf=round(scores.chrf, 2))
    write_report(report, request.report_dir, request.html)
    return [f"oracle of the {recorder.nbest}-best lists (best by sentence chrF): "
            f"BLEU = {scores.bleu:.2f}, chrF = {scores.chrf:.2f}",
            f"n-best lists: {path}"]
