import pytest
import torch

from seq2seq.errors import CheckpointError
from seq2seq.training.checkpoint import load_checkpoint, save_checkpoint


def test_save_is_atomic_and_loads(tmp_path):
    path = tmp_path / "ckpt" / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "blob": b"spm"})
    payload = load_checkpoint(path)
    assert payload["blob"] == b"spm" and payload["format"] == "seq2seq-checkpoint"
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left


def test_failed_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        save_checkpoint(path, {"step": 2, "bad": Unpicklable()})
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "best.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(1000)}})
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="best.pt: cannot read checkpoint"):
        load_checkpoint(path)


def test_foreign_checkpoint(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="not a seq2seq checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nothing.pt")
