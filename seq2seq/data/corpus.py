"""Read line-aligned plain-text corpora stored as ``{root}/{split}.{lang}`` files."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Iterator

from seq2seq.atomic import atomic_file
from seq2seq.errors import DataError

log = logging.getLogger(__name__)


MAX_LINE_CHARS = 20_000  # far beyond any sentence: a longer line is a missing line break


def decoded(line: bytes, path: Path, number: int) -> str:
    """Line ``number`` of ``path`` as text; DataError naming the file, line and byte if it is not
    UTF-8."""
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}:{number}: invalid UTF-8 at byte {err.start} of the line "
            f"({line[err.start:err.start + 4]!r}); expected UTF-8 text"
        ) from None


def read_lines(path: str | Path, allow_empty: bool = False,
               max_chars: int | None = MAX_LINE_CHARS) -> list[str]:
    """Lines of a UTF-8 text file without their line endings (``\\n`` or ``\\r\\n``).

    Raises DataError naming the file (and the line) when the file is missing, empty, holds bytes
    that are not UTF-8, or has a line longer than ``max_chars`` characters.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    raw = path.read_bytes()
    lines = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        text = decoded(line, path, number)
        if max_chars is not None and len(text) > max_chars:
            raise DataError(f"{path}:{number}: line has {len(text):,} characters; expected at most "
                            f"{max_chars:,} (a missing line break?)")
        lines.append(text[:-1] if text.endswith("\r") else text)
    if raw.endswith(b"\n") or not raw:
        lines.pop()  # the final newline ends the last line; it does not start a new one
    if not lines and not allow_empty:
        raise DataError(f"{path}: file is empty; expected one sentence per line")
    return lines


def iter_lines(path: str | Path) -> Iterator[str]:
    """The lines of a UTF-8 text file as ``read_lines`` gives them, one at a time, so a corpus of
    any size is read in bounded memory (no limit on a line's length: a training line). Raises
    DataError naming the file and line for a missing file or bytes that are not UTF-8."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            text = decoded(line, path, number)
            if text.endswith("\n"):
                text = text[:-1]
            yield text[:-1] if text.endswith("\r") else text


def iter_parallel(src_path: str | Path, tgt_path: str | Path) -> Iterator[tuple[str, str]]:
    """Aligned (source, target) lines of two files, streamed; DataError when their line counts
    differ or a file is empty (``read_parallel``'s checks, in bounded memory)."""
    pairs = 0
    for pairs, (src, tgt) in enumerate(zip_longest(iter_lines(src_path), iter_lines(tgt_path)),
                                       start=1):
        if src is None or tgt is None:
            longer, shorter = (tgt_path, src_path) if src is None else (src_path, tgt_path)
            raise DataError(f"line counts differ: {shorter} has {pairs - 1} lines, {longer} has "
                            "more; expected one target line per source line")
        yield src, tgt
    if pairs == 0:
        raise DataError(f"{src_path}: file is empty; expected one sentence per line")


def read_aligned(path: str | Path, references: list[str], option: str) -> list[str]:
    """The lines of ``path`` (given as ``option``), which must be as many as the references'."""
    lines = read_lines(path, allow_empty=True)
    if len(lines) != len(references):
        raise DataError(f"line counts differ: {option} {path} has {len(lines)} lines, "
                        f"the references have {len(references)}")
    return lines


@dataclass(frozen=True)
class ParallelText:
    """Aligned source and target lines of one split."""

    src: list[str]
    tgt: list[str]
    src_path: Path
    tgt_path: Path

    def __len__(self) -> int:
        return len(self.src)


def read_parallel(src_path: str | Path, tgt_path: str | Path,
                  max_chars: int | None = MAX_LINE_CHARS) -> ParallelText:
    """Read two aligned files; their line counts must match (``read_lines`` checks each line)."""
    src, tgt = read_lines(src_path, max_chars=max_chars), read_lines(tgt_path, max_chars=max_chars)
    if len(src) != len(tgt):
        raise DataError(
            f"line counts differ: {src_path} has {len(src)} lines, {tgt_path} has {len(tgt)}; "
            "expected one target line per source line"
        )
    return ParallelText(src, tgt, Path(src_path), Path(tgt_path))


@dataclass(frozen=True)
class CorpusFiles:
    """Where the splits of a parallel corpus live: ``{root}/{split}.{lang}``."""

    root: Path
    src_lang: str
    tgt_lang: str
    train: str = "train"
    valid: str = "valid"
    test: str = "test"

    def path(self, split: str, lang: str) -> Path:
        return self.root / f"{split}.{lang}"

    def pair(self, split: str) -> tuple[Path, Path]:
        return self.path(split, self.src_lang), self.path(split, self.tgt_lang)

    def read(self, split: str) -> ParallelText:
        """A split's pairs. A training line of any length is read (the pairs over
        ``data.max_length`` pieces are dropped and counted later); in the other splits a line
        over ``MAX_LINE_CHARS`` is an error, as every line there is scored."""
        return read_parallel(*self.pair(split), max_chars=None if split == self.train else
                             MAX_LINE_CHARS)

    def check_exist(self) -> None:
        """Raise DataError listing every missing file, before any work is done."""
        require_files([p for s in (self.train, self.valid, self.test) for p in self.pair(s)])


def require_files(paths: list[Path]) -> None:
    """Raise DataError listing every one of a corpus's ``paths`` that is not a file."""
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"corpus files not found: {', '.join(missing)} "
                        "(set data.root to the folder that holds them)")


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` whole or not at all (``seq2seq.atomic.atomic_file``)."""
    with atomic_file(path) as handle:
        handle.write(text)
    return Path(path)


def write_lines(path: str | Path, lines: list[str]) -> Path:
    """Write one line per item, atomically (``write_text_atomic``)."""
    return write_text_atomic(path, "".join(line + "\n" for line in lines))
