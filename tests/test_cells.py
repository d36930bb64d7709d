"""Reference cells (cells.py) against torch.nn with the same weights; residual stacks; rnn_relu."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.errors import ConfigError
from seq2seq.models.cells import ReferenceLayer, cell_step
from seq2seq.models.encoder import RNNEncoder
from seq2seq.models.rnn import LayeredRNN, build_rnn, torch_rnn

LENGTHS = torch.tensor([5, 2, 4, 1])


def run_packed(rnn: nn.Module, x: torch.Tensor, hx):
    packed = pack_padded_sequence(x, LENGTHS, batch_first=True, enforce_sorted=False)
    out, state = rnn(packed, hx)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
    return out, state


def layered_from_torch(reference: LayeredRNN, torch_module: nn.RNNBase) -> None:
    """Copy a multi-layer torch.nn RNN's weights into a LayeredRNN (layer k <- suffix _lk)."""
    state = {}
    for name, value in torch_module.state_dict().items():
        base, layer = name.rsplit("_l", 1)
        k, _, reverse = layer.partition("_")
        state[f"layers.{k}.{base}_l0{'_' + reverse if reverse else ''}"] = value
    reference.load_state_dict(state)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", ["rnn", "rnn_relu", "gru", "lstm"])
def test_reference_cells_match_torch_nn_with_padding(cell, bidirectional):
    torch.manual_seed(0)
    ours = LayeredRNN(cell, 6, 7, num_layers=2, bidirectional=bidirectional,
                      implementation="reference")
    theirs = torch_rnn(cell, 6, 7, num_layers=2, bidirectional=bidirectional)
    layered_from_torch(ours, theirs)
    x = torch.randn(4, 5, 6)
    dirs = 2 if bidirectional else 1
    h0 = torch.randn(2 * dirs, 4, 7)
    hx = (h0, torch.randn(2 * dirs, 4, 7)) if cell == "lstm" else h0
    ours_out, ours_state = run_packed(ours, x, hx)
    theirs_out, theirs_state = run_packed(theirs, x, hx)
    torch.testing.assert_close(ours_out, theirs_out, rtol=0, atol=1e-5)
    for a, b in zip(*(s if isinstance(s, tuple) else (s,) for s in (ours_state, theirs_state))):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert ours_out[1, 2:].abs().sum() == 0  # nothing past the second sentence's length


def test_reference_layer_loads_a_one_layer_torch_state_dict():
    theirs = nn.GRU(3, 4, batch_first=True, bidirectional=True)
    ours = ReferenceLayer("gru", 3, 4, bidirectional=True)
    ours.load_state_dict(theirs.state_dict())
    assert set(ours.state_dict()) == set(theirs.state_dict())


def test_peephole_lstm_uses_the_cell_state_in_its_gates():
    torch.manual_seed(0)
    layer = ReferenceLayer("lstm_peephole", 3, 4)
    plain = ReferenceLayer("lstm", 3, 4)
    plain.load_state_dict({k: v for k, v in layer.state_dict().items() if "peephole" not in k})
    x, h, c = torch.randn(2, 3), torch.randn(2, 4), torch.randn(2, 4)
    weights = layer._weights("")
    with torch.no_grad():
        weights["peephole"].zero_()
        same = cell_step("lstm_peephole", x, h, c, **weights)
        torch.testing.assert_close(same, cell_step("lstm", x, h, c, **plain._weights("")))
        weights["peephole"].fill_(0.5)
        assert not torch.allclose(cell_step("lstm_peephole", x, h, c, **weights)[0], same[0])


def test_residual_stack_adds_each_layers_input():
    torch.manual_seed(0)
    residual = build_rnn("gru", 5, 4, num_layers=2, bidirectional=True, residual=True)
    plain = LayeredRNN("gru", 5, 4, num_layers=2, bidirectional=True)
    plain.load_state_dict(residual.state_dict())
    x = torch.randn(3, 6, 5)
    first, _ = plain.layers[0](x)
    torch.testing.assert_close(residual(x)[0], plain(x)[0] + first)


def test_encoder_with_every_new_option_encodes_padding_independently():
    for options in [dict(cell="rnn_relu"), dict(cell="lstm", residual=True, num_layers=3),
                    dict(cell="lstm_peephole", implementation="reference", num_layers=2)]:
        torch.manual_seed(0)
        settings = dict(cell="gru", embedding_dim=6, hidden_size=5, num_layers=1,
                        bidirectional=True, dropout=0.0, residual=False, implementation="torch",
                        word_dropout=0.0)
        encoder = RNNEncoder(20, **{**settings, **options}).eval()
        batch = torch.tensor([[4, 5, 6, 3], [7, 3, 0, 0]])
        together = encoder(batch, torch.tensor([4, 2]))
        alone = encoder(batch[1:, :2], torch.tensor([2]))
        torch.testing.assert_close(together.states[1, :2], alone.states[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(together.final[:, 1], alone.final[:, 0], atol=1e-6, rtol=0)


def test_peephole_needs_the_reference_implementation():
    with pytest.raises(ConfigError, match="model.encoder.implementation=reference"):
        RNNEncoder(20, cell="lstm_peephole", embedding_dim=256, hidden_size=256, num_layers=1,
                   bidirectional=True, dropout=0.2, residual=False, implementation="torch",
                   word_dropout=0.0)


@pytest.mark.parametrize("cell", ["rnn", "rnn_relu", "gru", "lstm"])
def test_one_step_through_cell_kernels_equals_a_length_one_sequence(cell):
    from seq2seq.models.rnn import rnn_step
    torch.manual_seed(0)
    module = torch_rnn(cell, 6, 5, num_layers=3).eval()
    x, h = torch.randn(4, 6), torch.randn(3, 4, 5)
    c = torch.randn(3, 4, 5) if cell == "lstm" else None
    out, (h_n, c_n) = module(x.unsqueeze(1), (h, c)) if c is not None else (
        lambda o: (o[0], (o[1], None)))(module(x.unsqueeze(1), h))
    step_out, step_h, step_c = rnn_step(module, x, h, c)
    torch.testing.assert_close(step_out, out[:, 0], atol=1e-6, rtol=0)
    torch.testing.assert_close(step_h, h_n, atol=1e-6, rtol=0)
    if c is not None:
        torch.testing.assert_close(step_c, c_n, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", ["rnn", "rnn_relu", "gru", "lstm"])
def test_a_batch_of_input_gates_through_the_equations_equals_the_cpu_kernels(cell):
    # rnn_step's first_layer=(weight, gates) hands the CPU cell kernels a [B, G] bias; on CUDA
    # (whose fused kernels take only [G]) the same step goes through cells.cell_step instead.
    from seq2seq.models.cells import cell_step
    from seq2seq.models.rnn import CELL_KERNELS, _cell_name
    torch.manual_seed(0)
    module = torch_rnn(cell, 6, 5)
    x, h = torch.randn(4, 6), torch.randn(4, 5)
    c = torch.randn(4, 5) if cell == "lstm" else None
    gates = torch.randn(4, module.weight_ih_l0.size(0))  # per-row bias, as _embedding_gates makes
    weights = (module.weight_ih_l0, module.weight_hh_l0, gates, module.bias_hh_l0)
    kernel = CELL_KERNELS[cell]
    expected = kernel(x, (h, c), *weights) if c is not None else (kernel(x, h, *weights), None)
    got = cell_step(_cell_name(module), x, h, c, *weights)
    torch.testing.assert_close(got[0], expected[0], atol=1e-6, rtol=0)
    if c is not None:
        torch.testing.assert_close(got[1], expected[1], atol=1e-6, rtol=0)
