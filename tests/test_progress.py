"""Progress bars of the decoding tools (seq2seq/cli/progress.py): on a terminal only."""

from __future__ import annotations

import io

import pytest

from seq2seq.cli import progress
from seq2seq.cli.progress import LineProgress, ProgressPredictor
from seq2seq.cli.translate import main as translate_main
from seq2seq.pipeline import run_training
from tests.conftest import compose_train
from tests.test_smoke import tiny_overrides


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Echo:
    """A predictor that upper-cases its lines and records how it was called."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []
        self.last_seconds = 0.0
        self.model = "model"

    def predict(self, lines, line_offset=0):
        self.calls.append((len(lines), line_offset))
        self.last_seconds = 0.5
        return [line.upper() for line in lines]

    def translate(self, sentences, beam=None, line_offset=0):
        return self.predict(sentences, line_offset)


def test_no_terminal_no_bar():
    stream = io.StringIO()
    with LineProgress(100, stream=stream) as bar:
        bar.update(60)
        bar.update(40)
    assert not bar.enabled and stream.getvalue() == ""


def test_a_terminal_gets_lines_and_a_rate():
    stream = Terminal()
    with LineProgress(100, desc="translated", stream=stream, mininterval=0) as bar:
        bar.update(100)
    assert bar.enabled and "translated" in stream.getvalue() and "100/100" in stream.getvalue()
    assert "lines/s" in stream.getvalue()
    quiet = Terminal()
    with LineProgress(100, stream=quiet, show=False) as bar:
        bar.update(100)
    assert quiet.getvalue() == ""


def test_without_a_terminal_the_predictor_is_called_as_it_is(monkeypatch):
    monkeypatch.setattr(progress, "CHUNK_LINES", 4)
    echo, stream = Echo(), io.StringIO()
    wrapped = ProgressPredictor(echo, stream=stream)
    assert wrapped.translate([f"l{i}" for i in range(10)]) == [f"L{i}" for i in range(10)]
    assert echo.calls == [(10, 0)] and stream.getvalue() == ""
    assert wrapped.model == "model" and wrapped.last_seconds == 0.5  # the predictor's attributes


def test_on_a_terminal_long_inputs_decode_in_chunks_with_the_same_output(monkeypatch):
    monkeypatch.setattr(progress, "CHUNK_LINES", 4)
    echo = Echo()
    wrapped = ProgressPredictor(echo, stream=Terminal())
    assert wrapped.predict([f"l{i}" for i in range(10)], line_offset=5) == [f"L{i}" for i in range(10)]
    assert echo.calls == [(4, 5), (4, 9), (2, 13)]  # warnings still name the right lines
    assert wrapped.last_seconds == pytest.approx(1.5)  # the whole call's decoding time


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("progress")
    run_training(compose_train(tiny_overrides(tmp) + ["trainer.max_steps=2", "trainer.validate_every=2",
                                                      "report.bootstrap_resamples=0",
                                                      "report.attention_plots=0", "report.html=false"]),
                 tmp / "run")
    return tmp / "run" / "checkpoints" / "best.pt"


@pytest.mark.slow
def test_the_translate_tool_prints_nothing_extra_into_a_pipe(checkpoint, capsys):
    out = io.StringIO()
    lines = b"".join(b"%d cats\n" % i for i in range(30))
    assert translate_main(["--checkpoint", str(checkpoint), "--beam", "1", "--chunk", "7"],
                          stdin=io.BytesIO(lines), stdout=out) == 0
    assert len(out.getvalue().splitlines()) == 30
    assert capsys.readouterr().err == ""  # pytest's stderr is no terminal: no bar
