"""A run folder holds one run: a fresh run refuses another's files, resume needs last.pt, one
process at a time, and the step checkpoints it rotates are its own."""

import errno
import os
from types import SimpleNamespace

import pytest

from seq2seq.errors import CheckpointError, ConfigError
from seq2seq.pipeline import run_training
from seq2seq.training import run_folder
from seq2seq.training.checkpoint import CheckpointDir, load_checkpoint, save_checkpoint
from tests.conftest import compose_train
from tests.test_faults import FAST
from tests.test_smoke import tiny_overrides


def used_folder(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("last.pt", "step_8.pt", "step_9.pt"):
        (run / "checkpoints" / name).write_bytes(b"old run")
    (run / "metrics.csv").write_text("step\n9\n")
    (run / ".hydra").mkdir()  # Hydra's own, written before the run starts
    return run


def test_a_fresh_run_refuses_a_folder_that_holds_another_run(tmp_path):
    run = used_folder(tmp_path)
    with pytest.raises(ConfigError, match="holds a run already \\(checkpoints, metrics.csv\\): "
                                          "continue it with resume=true.*hydra.run.dir=.*"
                                          "overwrite=true"):
        run_folder.claim(run, resume=False, overwrite=False)
    assert (run / "checkpoints" / "step_9.pt").exists()  # nothing removed


def test_overwrite_clears_the_old_runs_files_first(tmp_path):
    run = used_folder(tmp_path)
    (run / "test.hyp.de").write_text("old\n")
    (run / "failed.json").write_text("{}")
    run_folder.claim(run, resume=False, overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == [".hydra"]


def test_overwrite_empties_a_linked_checkpoint_folder_and_keeps_the_link(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "last.pt").write_bytes(b"old run")
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").symlink_to(scratch)
    run_folder.claim(run, resume=False, overwrite=True)
    assert (run / "checkpoints").is_symlink() and not list(scratch.iterdir())


def test_resume_without_last_pt_is_an_error_not_a_fresh_start(tmp_path):
    with pytest.raises(ConfigError, match="resume=true: .*last.pt not found"):
        run_folder.claim(tmp_path, resume=True, overwrite=False)
    run_folder.claim(used_folder(tmp_path), resume=True, overwrite=False)


def test_a_second_process_in_the_same_folder_is_refused_naming_the_holder(tmp_path):
    with run_folder.run_lock(tmp_path):
        with pytest.raises(ConfigError, match=f"in use by process {os.getpid()}"):
            with run_folder.run_lock(tmp_path):
                pass
    with run_folder.run_lock(tmp_path):  # released with its holder
        pass


def test_step_files_that_are_not_numbered_are_left_alone(tmp_path):
    folder = CheckpointDir(tmp_path, keep=1)
    for name in ("step_3.pt", "step_12.pt", "step_best.pt", "step_5.pt.bak"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in folder.numbered()] == ["step_3.pt", "step_12.pt"]


@pytest.mark.slow
def test_training_twice_into_one_folder_needs_resume_or_overwrite(tmp_path):
    overrides = tiny_overrides(tmp_path) + FAST + ["trainer.max_steps=2"]
    run_training(compose_train(overrides), tmp_path / "run")
    with pytest.raises(ConfigError, match="holds a run already"):
        run_training(compose_train(overrides), tmp_path / "run")
    report = run_training(compose_train(overrides + ["overwrite=true"]), tmp_path / "run")
    assert report["steps"] == 2


def test_the_disk_check_counts_the_runs_checkpoints(tmp_path, monkeypatch):
    free = SimpleNamespace(free=600 * 2**20)
    monkeypatch.setattr(run_folder.shutil, "disk_usage", lambda path: free)
    # 10 M parameters, 3 float32 copies (weights, Adam's moments) in each of 5 files: best.pt,
    # last.pt, 2 step files and the next write's temporary
    run_folder.check_space(tmp_path, 10_000_000, keep_checkpoints=2, moving_average=False)  # 582
    with pytest.raises(ConfigError, match="has 600 MiB free; this run's checkpoints need about "
                                          "772 MiB more \\(10,000,000 parameters"):
        run_folder.check_space(tmp_path, 10_000_000, keep_checkpoints=2, moving_average=True)
    (tmp_path / "checkpoints").mkdir()
    with open(tmp_path / "checkpoints" / "last.pt", "wb") as handle:  # a resumed run's, sparse
        handle.truncate(300 * 2**20)
    run_folder.check_space(tmp_path, 10_000_000, keep_checkpoints=2, moving_average=True)  # 472


def test_a_full_disk_is_a_clean_error_that_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1, "config": {}})

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("seq2seq.training.checkpoint.torch.save", full)
    with pytest.raises(CheckpointError, match="last.pt: no space left on the device"):
        save_checkpoint(path, {"step": 2, "config": {}})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1 and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_killed_runs_unfinished_write_is_removed_on_the_next_start(tmp_path):
    run = used_folder(tmp_path)
    (run / "checkpoints" / ".last.pt.abc123.tmp").write_bytes(b"half")
    run_folder.claim(run, resume=True, overwrite=False)
    assert not list((run / "checkpoints").glob(".*.tmp"))
