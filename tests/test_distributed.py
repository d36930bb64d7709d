"""Data-parallel training: 2 gloo ranks under torchrun match one process on the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seq2seq.data.batching import ParallelBatches
from seq2seq.pipeline import run_training
from seq2seq.training.checkpoint import load_checkpoint
from tests.conftest import ROOT, compose_train
from tests.test_faults import FAST
from tests.test_smoke import tiny_overrides

# No dropout, so that the ranks' different RNG streams cannot matter; validation only at the end.
EXACT = ["model.encoder.dropout=0", "model.decoder.dropout=0", "trainer.validate_every=0",
         "trainer.max_epochs=5"]


def torchrun(tmp: Path, run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(ROOT / "scripts" / "train.py"), *tiny_overrides(tmp), *FAST, *EXACT, *overrides,
               f"hydra.run.dir={run_dir}"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done


# Run under torchrun: after shutdown_distributed, no thread of the process group may be left.
GROUP_FREED = """
import os
import torch
from seq2seq.training.distributed import init_distributed, shutdown_distributed

threads = lambda: len(os.listdir("/proc/self/task"))
before = threads()
context = init_distributed("gloo")
torch.optim.Adam(torch.nn.Linear(2, 2).parameters())  # imports torch._dynamo, as training does
context.gather(torch.get_rng_state())
shutdown_distributed()
assert threads() == before, f"{threads() - before} threads of the process group left"
"""


def model_of(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


def test_ranks_get_disjoint_equal_shares_of_each_epoch():
    src = [[5] * (1 + i % 7) for i in range(200)]
    whole = ParallelBatches(src, src, batch_tokens=40, seed=3).plan(2)
    shares = [ParallelBatches(src, src, batch_tokens=40, seed=3, rank=r, world_size=3).plan(2)
              for r in range(3)]
    assert len({len(share) for share in shares}) == 1
    assert len(shares[0]) == len(whole) // 3
    seen = [tuple(b) for share in shares for b in share]
    assert len(seen) == len(set(seen)) and set(seen) <= {tuple(b) for b in whole}


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="counts threads in /proc")
def test_shutdown_frees_the_process_group_and_its_threads(tmp_path):
    # A group kept alive past shutdown keeps gloo's workers running into interpreter exit, where
    # one releasing the last collective's tensors aborts the rank (a flaky SIGABRT).
    script = tmp_path / "group_freed.py"
    script.write_text(GROUP_FREED)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", str(script)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_and_resume(tmp_path):
    # Single process, gradient accumulation over 2 batches = 2 ranks with 1 batch each.
    single = tmp_path / "single"
    run_training(compose_train(tiny_overrides(tmp_path) + FAST + EXACT + [
        "trainer.max_steps=4", "trainer.accumulate_batches=2"]), single)

    straight = tmp_path / "straight"
    done = torchrun(tmp_path, straight, "trainer.max_steps=4")
    assert "bleu" in done.stdout and (straight / "report.json").exists()
    assert not (straight / "checkpoints" / "step_4.pt.tmp").exists()

    resumed = tmp_path / "resumed"
    torchrun(tmp_path, resumed, "trainer.max_steps=2")
    assert load_checkpoint(resumed / "checkpoints" / "last.pt")["trainer"]["step"] == 2
    torchrun(tmp_path, resumed, "trainer.max_steps=4", "resume=true")

    expected, distributed, continued = model_of(single), model_of(straight), model_of(resumed)
    payload = load_checkpoint(straight / "checkpoints" / "last.pt")
    assert payload["trainer"]["step"] == 4 and payload["trainer"]["world_size"] == 2
    assert len(payload["rng_ranks"]) == 2
    for name, value in expected.items():
        torch.testing.assert_close(distributed[name], value, rtol=0, atol=1e-6, msg=name)
        assert torch.equal(continued[name], distributed[name]), name
