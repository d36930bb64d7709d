"""The benchmark's timing loop: every model sees every batch, taking turns in a rotating order."""

from types import SimpleNamespace

import pytest

from benchmarks.speed import time_steps


def test_models_take_turns_on_the_same_batches():
    calls = []
    steps = {name: (lambda batch, name=name: calls.append((name, batch.id))) for name in "abc"}
    batches = [SimpleNamespace(id=i, num_tgt_tokens=10 * (i + 1)) for i in range(4)]
    results = time_steps(steps, dict.fromkeys("abc", batches), warmup=1)
    assert [name for name, _ in calls] == list("abc" "bca" "cab" "abc")
    assert [batch for _, batch in calls] == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    for name in "abc":
        assert results[name]["timed_steps"] == 3 and results[name]["tokens_per_batch"] == 30.0
        assert results[name]["tokens_per_second"] > 0


def test_models_of_another_vocabulary_count_the_tokens_of_their_own_batches():
    # the reference model (the anchors' 8,000 pieces) and an experiment model with another
    # vocabulary see the same sentences cut into different numbers of pieces
    calls = []
    steps = {name: (lambda batch, name=name: calls.append((name, batch.id))) for name in "ab"}
    batches = {"a": [SimpleNamespace(id=f"a{i}", num_tgt_tokens=10) for i in range(3)],
               "b": [SimpleNamespace(id=f"b{i}", num_tgt_tokens=8) for i in range(3)]}
    results = time_steps(steps, batches, warmup=1)
    assert calls == [("a", "a0"), ("b", "b0"), ("b", "b1"), ("a", "a1"), ("a", "a2"), ("b", "b2")]
    assert results["a"]["tokens_per_batch"] == 10.0 and results["b"]["tokens_per_batch"] == 8.0


FAKE_FLOOR = '''
import os
import torch
from torch import nn
PAD, UNK = 1, 0
class Seq2Seq(nn.Module):
    def __init__(self, vocab_size, kind):
        super().__init__()
        self.out = nn.Linear(1, vocab_size)
    def forward(self, src, src_len, tgt_in):
        with open(os.environ["FLOOR_LOG"], "a") as log:  # proves the child ran the step
            log.write(f"{os.getpid()} {tuple(tgt_in.shape)}\\n")
        return self.out(tgt_in.unsqueeze(-1).float())
'''


@pytest.mark.slow
def test_floor_process_steps_the_floor_in_a_child_process(tmp_path, monkeypatch):
    import os

    from benchmarks.speed import FloorProcess
    from seq2seq.data.batching import make_batch

    (tmp_path / "torch_floor.py").write_text(FAKE_FLOOR)
    log = tmp_path / "steps.log"
    monkeypatch.setenv("FLOOR_LOG", str(log))
    floor = FloorProcess(str(tmp_path / "torch_floor.py"), 12, ["loop"], threads=1)
    try:
        batch = make_batch([[5, 6, 7], [8]], [[9, 10], [11, 5, 6]], [0, 1])
        floor.step("loop")(batch)
        floor.step("loop")(batch)
    finally:
        floor.close()
    pids = [line.split()[0] for line in log.read_text().splitlines()]
    assert len(pids) == 2 and pids[0] == pids[1] != str(os.getpid())
    assert not floor.process.is_alive()


def test_floor_process_reports_a_missing_floor(tmp_path):
    import pytest

    from benchmarks.speed import FloorProcess
    from seq2seq.errors import Seq2SeqError

    with pytest.raises(Seq2SeqError, match="torch_floor.py: not found"):
        FloorProcess(str(tmp_path / "torch_floor.py"), 12, ["loop"])
