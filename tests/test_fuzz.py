"""Property tests: any bytes in, one line out per line in; corpus reading never crashes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seq2seq.cli.translate import main as translate_main
from seq2seq.data.corpus import read_lines
from seq2seq.errors import DataError
from seq2seq.pipeline import run_training
from tests.conftest import compose_train
from tests.test_faults import FAST
from tests.test_smoke import tiny_overrides

LINE_BYTES = st.lists(st.sampled_from([b"a", b"two cats", b" ", b"\t", b"\r", b"\xff", b"\xc3",
                                        b"\xc3\xa4", b"\x00", b"\xe2\x80\xa8", b"x" * 300, b"\n",
                                        b"\n\n", b"\r\n"]), max_size=30).map(b"".join)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("fuzz")
    run_training(compose_train(tiny_overrides(tmp) + FAST + ["trainer.max_steps=2",
                                                             "data.max_length=20"]), tmp / "run")
    return tmp / "run" / "checkpoints" / "best.pt"


def expected_lines(data: bytes) -> int:
    """Lines as a pipe sees them: each newline ends one; trailing bytes make one more."""
    return data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(LINE_BYTES, st.binary(max_size=200)))
def test_translate_tool_keeps_one_line_per_line(checkpoint, data, capsys):
    out = io.StringIO()
    code = translate_main(["--checkpoint", str(checkpoint), "--beam", "2", "--chunk", "4"],
                          stdin=io.BytesIO(data), stdout=out)
    assert code == 0
    text = out.getvalue()
    assert text.count("\n") == expected_lines(data)
    assert text == "" or text.endswith("\n")
    assert "Traceback" not in capsys.readouterr().err


@settings(max_examples=150, deadline=None)
@given(data=st.one_of(LINE_BYTES, st.binary(max_size=300)))
def test_corpus_reader_reads_or_names_the_problem(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("corpus") / "train.en"
    path.write_bytes(data)
    try:
        lines = read_lines(path, allow_empty=True)
    except DataError as err:
        assert str(path) in str(err)
        return
    assert len(lines) == expected_lines(data)
    assert not any("\n" in line for line in lines)
