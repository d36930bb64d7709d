"""The translate tool's reader: one line per "\n", in bounded memory, whatever the bytes."""

import io

from seq2seq.cli.lines import stream_lines


class CountingStream(io.BytesIO):
    """A byte stream that remembers the largest read it was asked for."""

    largest = 0

    def readline(self, size=-1):
        line = super().readline(size)
        CountingStream.largest = max(CountingStream.largest, len(line))
        return line


def test_a_line_without_an_end_is_cut_in_bounded_memory():
    huge = b"x" * 5000
    stream = CountingStream(b"first\n" + huge + b"\nlast")
    warnings = io.StringIO()
    lines = list(stream_lines(stream, "in.txt", warnings, max_bytes=100))
    assert lines == ["first", "x" * 100, "last"]
    assert CountingStream.largest <= 101
    assert "in.txt:2: line longer than 100 bytes; cut there" in warnings.getvalue()


def test_lines_end_at_newlines_only():
    text = "a\u2028b\x85c\rd\ne\r\n".encode()
    assert list(stream_lines(io.BytesIO(text), "in.txt")) == ["a\u2028b\x85c\rd", "e"]
