"""CPU threads for a process (seq2seq/runtime.py): its share of the cores (num_threads: auto)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from seq2seq.errors import ConfigError
from seq2seq.runtime import (
    SharedCores,
    apply_num_threads,
    available_cores,
    launcher_jobs,
    parallel_jobs,
    process_start,
    resolve_num_threads,
    thread_share,
)
from tests.conftest import CONF


@pytest.mark.parametrize("cores, ranks, jobs, expected", [
    (16, 1, 1, 16),   # one run: every core
    (16, 4, 1, 4),    # torchrun, 4 ranks on this machine
    (16, 1, 3, 5),    # three parallel Hydra jobs
    (16, 2, 4, 2),    # both
    (2, 4, 1, 1),     # more processes than cores: one thread each, never 0
    (3, 0, 0, 3),     # nonsense counts count as one
])
def test_thread_share_divides_the_cores(cores, ranks, jobs, expected):
    assert thread_share(cores, ranks, jobs) == expected


@pytest.mark.parametrize("n_jobs, expected", [(3, 3), (-1, 8), (-2, 7), (100, 8), (None, 1), (0, 1)])
def test_launcher_jobs_follow_joblibs_convention(n_jobs, expected):
    assert launcher_jobs(n_jobs, cores=8) == expected


def test_auto_takes_the_torchrun_ranks_from_the_environment():
    assert resolve_num_threads("auto", cores=8, env={}, jobs=1) == 8
    assert resolve_num_threads("auto", cores=8, env={"LOCAL_WORLD_SIZE": "4"}, jobs=1) == 2
    assert resolve_num_threads("AUTO", cores=8, env={"LOCAL_WORLD_SIZE": "2"}, jobs=2) == 2


def test_an_explicit_number_wins_and_null_keeps_torchs_default():
    assert resolve_num_threads(3, cores=8, env={"LOCAL_WORLD_SIZE": "4"}, jobs=2) == 3
    assert resolve_num_threads("5", cores=1) == 5
    assert resolve_num_threads(None) is None


@pytest.mark.parametrize("value", [0, -2, "many", 2.5, True])
def test_other_values_are_a_config_error_naming_the_option(value):
    with pytest.raises(ConfigError, match="num_threads="):
        resolve_num_threads(value)


def test_cores_are_this_processs_affinity():
    if hasattr(os, "sched_getaffinity"):
        assert available_cores() == len(os.sched_getaffinity(0))
    assert available_cores() >= 1


def test_apply_sets_torchs_threads():
    before = torch.get_num_threads()
    try:
        assert apply_num_threads(1) == 1 and torch.get_num_threads() == 1
        assert apply_num_threads(None) is None and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def hydra_config(*overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def test_a_joblib_launchers_jobs_share_the_cores():
    instance = HydraConfig.instance()
    saved = instance.cfg
    try:
        instance.set_config(hydra_config("hydra/launcher=joblib", "hydra.launcher.n_jobs=2"))
        assert parallel_jobs(cores=8) == 2
        assert resolve_num_threads("auto", cores=8, env={}) == 4
        instance.set_config(hydra_config("hydra/launcher=joblib", "hydra.launcher.n_jobs=-1"))
        assert parallel_jobs(cores=8) == 8
        instance.set_config(hydra_config())  # the basic launcher runs one job at a time
        assert parallel_jobs(cores=8) == 1
    finally:
        instance.cfg = saved


def test_runs_started_by_hand_share_the_cores_while_both_run(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    before = torch.get_num_threads()
    try:
        with SharedCores("auto", directory=tmp_path, cores=8, env={}) as mine:
            assert mine.entry is not None and mine.entry.parent == tmp_path
            assert mine.entry.name == f"{os.getpid()}-{process_start(os.getpid())}"
            assert mine.threads() == 8  # alone
            (tmp_path / f"{other.pid}-{process_start(other.pid)}").touch()
            assert mine.live_runs() == 2 and mine.threads() == 4
            mine.rebalance(every_seconds=0)
            assert torch.get_num_threads() == 4
            other.kill()
            other.wait()
            assert mine.threads() == 8  # the other run ended without unregistering
            assert [path.name for path in tmp_path.iterdir()] == [mine.entry.name]
        assert list(tmp_path.iterdir()) == []  # unregistered on leaving
    finally:
        other.kill()
        torch.set_num_threads(before)


def test_a_reused_pid_is_not_a_run(tmp_path):
    if not process_start(os.getpid()):
        pytest.skip("process start times need Linux's /proc")
    (tmp_path / f"{os.getppid()}-1").touch()  # alive, but not the process that registered
    assert SharedCores("auto", directory=tmp_path, cores=8, env={}).live_runs() == 1
    assert list(tmp_path.iterdir()) == []


def test_stray_files_and_a_folder_others_may_write_to_never_stop_a_run(tmp_path, caplog):
    for name in ("notes", "12x-3", "99999999999-1", "\u00b2-1"):
        (tmp_path / name).write_text("x")
    assert SharedCores("auto", directory=tmp_path, cores=8, env={}).live_runs() == 1
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    before = torch.get_num_threads()
    try:
        with SharedCores("auto", directory=shared, cores=2, env={}) as mine:
            assert mine.entry is None and mine.threads() == 2
            mine.rebalance(every_seconds=0)
        assert "cannot register" in caplog.text and list(shared.iterdir()) == []
    finally:
        torch.set_num_threads(before)


def test_an_explicit_number_registers_nothing(tmp_path):
    before = torch.get_num_threads()
    try:
        with SharedCores(1, directory=tmp_path, cores=8, env={}) as mine:
            assert mine.entry is None and torch.get_num_threads() == 1
            assert list(tmp_path.iterdir()) == []
    finally:
        torch.set_num_threads(before)


def test_an_unwritable_runs_folder_only_warns(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    before = torch.get_num_threads()
    try:
        with SharedCores("auto", directory=blocker / "runs", cores=2, env={}) as mine:
            assert mine.entry is None and mine.threads() == 2
        assert "cannot register" in caplog.text
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_each_job_of_a_joblib_multirun_logs_its_share(tmp_path):
    from tests.test_smoke import run_cli, tiny_overrides

    result = run_cli("train.py", "-m", *tiny_overrides(tmp_path), "trainer.max_steps=1",
                     "report.bootstrap_resamples=0", "report.attention_plots=0", "report.html=false",
                     "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=1,2",
                     f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode == 0, result.stderr
    share = thread_share(available_cores(), 1, launcher_jobs(2, available_cores()))
    logs = sorted((tmp_path / "sweep").glob("*/train.log"))
    assert len(logs) == 2
    for log in logs:
        assert f"CPU threads: {share} intra-op (num_threads=auto" in log.read_text()
