"""Line-exact text I/O for the command-line tools: every input line gives one output line."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import IO, BinaryIO, TextIO, cast

from seq2seq.atomic import atomic_file

MAX_LINE_BYTES = 1 << 20  # far beyond any sentence: a longer line is cut, in bounded memory


def stream_lines(stream: BinaryIO, name: str, warn: TextIO = sys.stderr,
                 max_bytes: int = MAX_LINE_BYTES) -> Iterator[str]:
    """Yield each line of a byte stream as text without its line ending: lines end at "\n" only
    (a "\r" or U+2028 inside a line stays in it). Bytes that are not UTF-8 are replaced (U+FFFD)
    and a line over ``max_bytes`` is cut there, each with a warning naming the line, so the line
    count never changes and a line without an end is never read whole."""
    number = 0
    while raw := stream.readline(max_bytes + 1):
        number += 1
        if len(raw) > max_bytes and not raw.endswith(b"\n"):
            while (rest := stream.readline(max_bytes)) and not rest.endswith(b"\n"):
                pass  # the rest of the line, read and dropped a bounded piece at a time
            print(f"warning: {name}:{number}: line longer than {max_bytes:,} bytes; cut there",
                  file=warn)
            raw = raw[:max_bytes]
        raw = raw.rstrip(b"\n").rstrip(b"\r")
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as err:
            print(f"warning: {name}:{number}: invalid UTF-8 at byte {err.start}; "
                  "undecodable bytes replaced", file=warn)
            yield raw.decode("utf-8", errors="replace")


class AtomicOutput:
    """A text file written under a temporary name and renamed into place on success, so a failed
    run never leaves a half-written output; with no path, standard output."""

    def __init__(self, path: str | None, default: TextIO | None = None) -> None:
        self.path = Path(path) if path else None
        self.default = default or sys.stdout
        self._file: AbstractContextManager[IO] | None = None  # atomic_file's, while open

    def __enter__(self) -> TextIO:
        if self.path is None:
            return self.default
        self._file = atomic_file(self.path)
        return cast(TextIO, self._file.__enter__())  # mode "w": a text file

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._file is None:  # no path: standard output, flushed, not closed
            self.default.flush()
            return
        self._file.__exit__(exc_type, exc, tb)  # renames, or removes and lets the error go on
