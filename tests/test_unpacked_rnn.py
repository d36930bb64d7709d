import platform
import subprocess
import sys

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.models.encoder import RNNEncoder, mostly_real
from seq2seq.models.rnn import reversal_index, run_unpacked, torch_rnn


def packed_run(rnn, x, lengths):
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, hidden = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
    return out, hidden[0] if isinstance(hidden, tuple) else hidden


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn", "rnn_relu"])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("layers", [1, 2])
def test_unpacked_run_equals_the_packed_one_with_its_gradients(cell, bidirectional, layers):
    torch.manual_seed(0)
    rnn = torch_rnn(cell, 5, 4, layers, bidirectional, dropout=0.3).eval()  # eval: no dropout
    lengths = torch.tensor([6, 2, 5, 1])
    x = torch.randn(4, 6, 5, requires_grad=True)
    weights = torch.randn(4, 6, 4 * (2 if bidirectional else 1))

    expected, expected_final = packed_run(rnn, x, lengths)
    ((expected * weights).sum() + expected_final.sum()).backward()
    expected_grads = [x.grad.clone()] + [p.grad.clone() for p in rnn.parameters()]
    x.grad = None
    rnn.zero_grad()

    out, final = run_unpacked(rnn, x, lengths)
    ((out * weights).sum() + final.sum()).backward()
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(final, expected_final, atol=1e-6)
    for got, want in zip([x.grad] + [p.grad for p in rnn.parameters()], expected_grads):
        assert torch.allclose(got, want, atol=1e-5)


def test_reversal_keeps_padding_in_place_and_undoes_itself():
    index = reversal_index(torch.tensor([3, 1]), 4)
    assert index.tolist() == [[2, 1, 0, 3], [0, 1, 2, 3]]
    assert torch.equal(index.gather(1, index), torch.arange(4).expand(2, 4))


def test_encoder_takes_the_padded_path_only_for_well_filled_batches():
    assert mostly_real(torch.tensor([10, 9, 10]), 10)
    assert not mostly_real(torch.tensor([10, 2, 3]), 10)
    torch.manual_seed(0)
    encoder = RNNEncoder(20, cell="gru", embedding_dim=8, hidden_size=6, num_layers=2,
                         bidirectional=True, dropout=0.2, residual=False, implementation="torch",
                         word_dropout=0.0).eval()
    src = torch.randint(4, 20, (3, 10))
    src[1, 9:] = 0  # PAD
    full, ragged = torch.tensor([10, 9, 10]), torch.tensor([10, 2, 3])
    for lengths in (full, ragged):
        src_masked = src.masked_fill(torch.arange(10) >= lengths.unsqueeze(1), 0)
        encoded = encoder(src_masked, lengths)
        packed_states, packed_final = packed_run(encoder.rnn, encoder.embedding(src_masked), lengths)
        assert torch.allclose(encoded.states, packed_states, atol=1e-6)
        assert torch.allclose(encoded.final[-1], torch.cat([packed_final[2], packed_final[3]], -1),
                              atol=1e-6)


WHERE_A_BIG_TENSOR_LIVES = """
import sys, torch
from seq2seq.runtime import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
big = torch.ones(4096, 4096)  # 64 MiB, alive while we look
address = big.data_ptr()
for line in open("/proc/self/maps"):
    low, high = (int(x, 16) for x in line.split()[0].split("-"))
    if low <= address < high:
        print("heap" if "[heap]" in line else "mapping")
"""


@pytest.mark.slow
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
@pytest.mark.parametrize("setting, region", [("keep", "heap"), ("default", "mapping")])
def test_keep_freed_memory_serves_big_blocks_from_the_heap(setting, region):
    # glibc maps a block this big on its own and unmaps it when freed (so the next one faults
    # in fresh pages); after keep_freed_memory it comes from the heap, which is not trimmed.
    # In a fresh interpreter, so that no earlier test has set it.
    result = subprocess.run([sys.executable, "-c", WHERE_A_BIG_TENSOR_LIVES, setting],
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == region
