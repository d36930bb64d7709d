"""Atomic writes: whole or not at all, with the permissions a plain write would give."""

import os
import stat

import pytest
import torch

from seq2seq.atomic import atomic_file
from seq2seq.training.checkpoint import save_checkpoint


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_a_new_file_gets_the_umasks_mode_not_a_private_one(tmp_path, umask_022):
    """mkstemp creates 0600 files: a shared run folder's checkpoints and reports would be
    unreadable to the group."""
    with atomic_file(tmp_path / "report.md") as handle:
        handle.write("x")
    save_checkpoint(tmp_path / "best.pt", {"model": {"w": torch.ones(1)}, "config": {}})
    assert mode(tmp_path / "report.md") == mode(tmp_path / "best.pt") == 0o644


def test_a_replaced_file_keeps_its_mode(tmp_path, umask_022):
    path = tmp_path / "hyp.txt"
    path.write_text("old")
    path.chmod(0o640)
    with atomic_file(path) as handle:
        handle.write("new")
    assert path.read_text() == "new" and mode(path) == 0o640


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(path) as handle:
            handle.write("half")
            raise RuntimeError("boom")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]
