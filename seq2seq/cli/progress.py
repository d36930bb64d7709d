"""A progress bar for the tools that decode many lines: lines done and lines per second on a
terminal's stderr, and nothing at all when stderr is a pipe or a log file (whose reader wants the
tool's own lines only)."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any, Optional, Sequence, TextIO

from tqdm import tqdm

CHUNK_LINES = 1000  # lines decoded between two updates of the bar (the translate tool's --chunk)


class LineProgress:
    """``with LineProgress(total) as bar: ... bar.update(n)``: a bar on ``stream`` (default
    stderr) when it is a terminal; otherwise ``update`` does nothing and nothing is written."""

    def __init__(self, total: Optional[int] = None, desc: str = "lines",
                 stream: Optional[TextIO] = None, show: bool = True,
                 mininterval: float = 0.5) -> None:
        self.stream = stream or sys.stderr
        self.enabled = show and _is_terminal(self.stream)  # show=False: e.g. typed input
        self._bar: Optional[tqdm] = tqdm(total=total, desc=desc, unit=" lines", file=self.stream,
                                         leave=False, dynamic_ncols=True, mininterval=mininterval
                                         ) if self.enabled else None

    def update(self, lines: int) -> None:
        """Count ``lines`` more lines done."""
        if self._bar is not None:
            self._bar.update(lines)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class ProgressPredictor:
    """A predictor (``topologies.base.Predictor``; a ``Translator`` too) that shows a
    ``LineProgress`` bar while it decodes a list of lines.

    Only with a bar does it decode a long list in chunks of ``CHUNK_LINES`` lines (as the translate
    tool does), to have something to show; without one, each call goes straight through, so the
    output in a pipe or a log is exactly the predictor's. Other attributes are the predictor's.
    """

    def __init__(self, predictor: Any, stream: Optional[TextIO] = None) -> None:
        self.predictor = predictor
        self.stream = stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self.predictor, name)

    def _chunked(self, method: str, lines: Sequence[str], line_offset: int,
                 **kwargs: Any) -> list[str]:
        call = getattr(self.predictor, method)
        with LineProgress(len(lines), desc="decoding", stream=self.stream) as bar:
            if not bar.enabled or len(lines) <= CHUNK_LINES:
                out = call(lines, line_offset=line_offset, **kwargs)
                bar.update(len(lines))
                return out
            out, seconds = [], 0.0
            for start in range(0, len(lines), CHUNK_LINES):
                out.extend(call(lines[start:start + CHUNK_LINES], line_offset=line_offset + start,
                                **kwargs))
                seconds += getattr(self.predictor, "last_seconds", 0.0)
                bar.update(min(CHUNK_LINES, len(lines) - start))
            if hasattr(self.predictor, "last_seconds"):
                self.predictor.last_seconds = seconds  # the whole call's, as without chunks
            return out

    def translate(self, sentences: Sequence[str], beam: Optional[int] = None,
                  line_offset: int = 0) -> list[str]:
        """``Translator.translate`` with a bar."""
        return self._chunked("translate", sentences, line_offset, beam=beam)

    def predict(self, lines: Sequence[str], line_offset: int = 0) -> list[str]:
        """``Predictor.predict`` with a bar."""
        return self._chunked("predict", lines, line_offset)
