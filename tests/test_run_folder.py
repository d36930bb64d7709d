"""A run folder holds one run: a fresh run refuses another's files, resume needs last.pt, one
process at a time, and the step checkpoints it rotates are its own."""

import os

import pytest

from seq2seq.errors import ConfigError
from seq2seq.pipeline import run_training
from seq2seq.training import run_folder
from seq2seq.training.checkpoint import CheckpointDir
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
    run_folder.claim(run, resume=False, overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == [".hydra"]


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
