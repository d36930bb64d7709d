"""The benchmark's timing loop: every model sees every batch, taking turns in a rotating order."""

from types import SimpleNamespace

from seq2seq.cli.benchmark import time_steps


def test_models_take_turns_on_the_same_batches():
    calls = []
    steps = {name: (lambda batch, name=name: calls.append((name, batch.id))) for name in "abc"}
    batches = [SimpleNamespace(id=i, num_tgt_tokens=10 * (i + 1)) for i in range(4)]
    results = time_steps(steps, batches, warmup=1)
    assert [name for name, _ in calls] == list("abc" "bca" "cab" "abc")
    assert [batch for _, batch in calls] == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    for name in "abc":
        assert results[name]["timed_steps"] == 3 and results[name]["tokens_per_batch"] == 30.0
        assert results[name]["tokens_per_second"] > 0
