import torch

from seq2seq.data.batching import (
    ParallelBatches,
    ResampledParallelBatches,
    filter_pairs,
    length_batches,
    make_batch,
)
from seq2seq.tokenization import BOS, EOS, PAD


def test_make_batch_shifts_target_and_pads():
    batch = make_batch([[5, 6, 7], [8]], [[9, 10], [11, 12, 13]], [0, 1])
    assert batch.src.tolist() == [[5, 6, 7, EOS], [8, EOS, PAD, PAD]]
    assert batch.src_len.tolist() == [4, 2]
    assert batch.tgt_in.tolist() == [[BOS, 9, 10, PAD], [BOS, 11, 12, 13]]
    assert batch.tgt_out.tolist() == [[9, 10, EOS, PAD], [11, 12, 13, EOS]]
    assert batch.num_tgt_tokens == 7


def test_length_batches_respect_budget_and_cover_everything():
    lengths = [1 + (i * 7) % 23 for i in range(500)]
    batches = length_batches(lengths, batch_tokens=60, shuffle=True, seed=1)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 60
    # Similar lengths together: each batch spans a narrow range.
    assert max(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) <= 1


def test_shuffling_is_seeded():
    lengths = [5] * 100 + [9] * 100
    a = length_batches(lengths, 50, shuffle=True, seed=1)
    assert a == length_batches(lengths, 50, shuffle=True, seed=1)
    assert a != length_batches(lengths, 50, shuffle=True, seed=2)


def test_epoch_can_restart_at_a_batch():
    src = [[4 + i % 5] * (1 + i % 9) for i in range(120)]
    batches = ParallelBatches(src, src, batch_tokens=40, seed=3)
    full = [b.indices.tolist() for b in batches.epoch(2)]
    assert [b.indices.tolist() for b in batches.epoch(2, start=3)] == full[3:]
    assert batches.num_batches(2) == len(full)


def test_filter_pairs_drops_empty_and_long(caplog):
    src = [[4], [], [4] * 10, [5, 6]]
    tgt = [[7], [8], [9], []]
    with caplog.at_level("INFO"):
        kept_src, kept_tgt = filter_pairs(src, tgt, max_length=5)
    assert kept_src == [[4]] and kept_tgt == [[7]]
    assert "dropped 2 pairs with an empty side and 1 pairs over 5 pieces" in caplog.text


def test_pad_positions_hold_pad_id():
    batch = make_batch([[4] * 3, [4]], [[5], [5] * 4], [0, 1])
    assert (batch.src == PAD).sum() == 2 and batch.src.dtype == torch.long


def test_resampled_batches_take_each_epochs_pairs_and_replay_them():
    src = [[4 + i % 5] * (1 + i % 6) for i in range(60)]
    calls = []

    def resample(epoch):  # epoch e: every sequence gains e tokens; pair 0 gets an empty side
        calls.append(epoch)
        out = [seq + [9] * epoch for seq in src]
        out[0] = []
        return out, out

    batches = ResampledParallelBatches(src, src, resample, max_length=8, batch_tokens=40, seed=3)
    pairs = {i: (s.tolist(), t.tolist()) for b in batches.epoch(2)
             for i, s, t in zip(b.indices.tolist(), b.src, b.tgt_out)}
    assert sorted(pairs) == list(range(60))  # every pair, once
    assert pairs[1][0][:4] == [5, 5, 9, 9]  # epoch 2's segmentation ...
    assert pairs[0][0][:2] == [4, EOS]  # ... but the fixed pair where a sampled side is empty
    assert pairs[5][0] == [4] * 6 + [9, 9, EOS]  # at max_length: kept
    too_long = [i for i in range(60) if len(src[i]) + 2 > 8]  # sampled pair over max_length
    assert all(pairs[i][0][:len(src[i]) + 1] == src[i] + [EOS] for i in too_long)
    full = [b.indices.tolist() for b in batches.epoch(2)]
    assert [b.indices.tolist() for b in batches.epoch(2, start=2)] == full[2:]  # resumable
    assert calls == [2]  # one sampling per epoch, however often its plan is asked for
    batches.num_batches(3)
    assert calls == [2, 3]
    assert [b.src.tolist() for b in batches.in_order(16)][0][0] == src[0] + [EOS] + [PAD] * 5
