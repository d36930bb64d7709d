"""The recurrent stack shared by encoders and decoders: ``build_rnn`` picks its implementation.

- ``torch`` (default): ``nn.RNN``/``nn.GRU``/``nn.LSTM``, one oneDNN/cuDNN call for the whole stack.
- ``residual=true``: one ``torch.nn`` module per layer, each layer's input added to its output from
  the second layer on (Wu et al., 2016), which helps deep stacks train.
- ``implementation=reference``: the cells of ``cells.py``, written from their equations, one time
  step per Python call (the only one with ``lstm_peephole`` and ``gru_original``).

All three take and return what ``torch.nn``'s RNNs do: batch-first tensors or a PackedSequence,
and the final state ``h_n`` (``(h_n, c_n)`` for LSTMs) as ``[layers * directions, B, H]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Optional, Union, get_args

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from seq2seq.errors import ConfigError, check_choice, check_range
from seq2seq.models.cells import ReferenceLayer, cell_step
from seq2seq.models.dropout import Dropout
from seq2seq.models.dropout import dropout as apply_dropout

Cell = Literal["rnn", "rnn_relu", "gru", "gru_original", "lstm", "lstm_peephole"]
CELLS: tuple[str, ...] = get_args(Cell)
# Cells whose equations no torch.nn kernel computes: only the reference implementation has them.
REFERENCE_ONLY: tuple[str, ...] = ("gru_original", "lstm_peephole")
IMPLEMENTATIONS = ("torch", "reference")
State = Union[Tensor, tuple[Tensor, Tensor]]


def has_cell_state(cell: str) -> bool:
    """LSTMs carry a cell state c besides h."""
    return cell in ("lstm", "lstm_peephole")


def check_rnn_options(cell: str, hidden_size: int, num_layers: int, dropout: float, prefix: str,
                      implementation: str = "torch") -> None:
    check_choice(f"{prefix}.cell", cell, CELLS)
    check_choice(f"{prefix}.implementation", implementation, IMPLEMENTATIONS)
    check_range(f"{prefix}.hidden_size", hidden_size, 1)
    check_range(f"{prefix}.num_layers", num_layers, 1)
    check_range(f"{prefix}.dropout", dropout, 0.0, 1.0)
    if cell in REFERENCE_ONLY and implementation != "reference":
        raise ConfigError(f"{prefix}.cell={cell} has no torch.nn kernel: set "
                          f"{prefix}.implementation=reference")


def torch_rnn(cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
              bidirectional: bool = False, dropout: float = 0.0) -> nn.RNNBase:
    """The torch.nn module for ``cell`` (batch first)."""
    options = dict(num_layers=num_layers, batch_first=True, bidirectional=bidirectional,
                   dropout=dropout if num_layers > 1 else 0.0)
    if cell in ("rnn", "rnn_relu"):
        return nn.RNN(input_size, hidden_size, nonlinearity="relu" if cell == "rnn_relu" else "tanh",
                      **options)
    return {"gru": nn.GRU, "lstm": nn.LSTM}[cell](input_size, hidden_size, **options)


# torch's fused one-step kernels, by the cell's name in cells.cell_step (their signatures differ:
# the LSTM's takes and returns (h, c))
CELL_KERNELS: dict[str, Callable[..., Any]] = {
    "rnn": torch.rnn_tanh_cell, "rnn_relu": torch.rnn_relu_cell, "gru": torch.gru_cell,
    "lstm": torch.lstm_cell}


def rnn_step(rnn: nn.RNNBase, x: Tensor, hidden: Tensor, cell: Optional[Tensor] = None,
             first_layer: Optional[tuple[Tensor, Tensor]] = None
             ) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """One time step of a unidirectional ``torch.nn`` RNN through its cell kernels.

    Calling the module on a length-1 sequence costs a sequence call's overhead at every step of a
    decoder loop; the cell kernels (what ``nn.GRUCell`` runs) give the same numbers for less.
    x: [B, I]; hidden, cell: [layers, B, H]. Returns the top layer's output [B, H] and the new
    hidden and cell states.

    ``first_layer`` = (weight, gates): part of layer 0's input projection is already done.
    ``gates`` [B, G] holds W_known · known_inputs + b_ih, and x is only the rest of the input,
    multiplied by ``weight`` (the other columns of W_ih). The CPU kernels add a [B, G] bias as
    they add b_ih, so the result is the same as with the whole input; CUDA's fused kernels take
    only a [G] bias, so there that layer runs through the cell's equations (``cell_step``).
    """
    name = _cell_name(rnn)
    hs, cs = [], []
    for k in range(rnn.num_layers):
        weights = (getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"weight_hh_l{k}"),
                   getattr(rnn, f"bias_ih_l{k}"), getattr(rnn, f"bias_hh_l{k}"))
        c_k = None if cell is None else cell[k]
        if k == 0 and first_layer is not None:
            weights = (first_layer[0], weights[1], first_layer[1], weights[3])
        if k == 0 and first_layer is not None and x.device.type != "cpu":
            h, c = cell_step(name, x, hidden[k], c_k, *weights)
        elif name == "lstm":
            h, c = CELL_KERNELS[name](x, (hidden[k], c_k), *weights)
        else:
            h, c = CELL_KERNELS[name](x, hidden[k], *weights), None
        if c is not None:
            cs.append(c)
        hs.append(h)
        # torch.nn applies its dropout to the outputs of every layer but the last
        x = apply_dropout(h, rnn.dropout, rnn.training) if k < rnn.num_layers - 1 else h
    return x, torch.stack(hs), torch.stack(cs) if cs else None


def _cell_name(rnn: nn.RNNBase) -> str:
    """The ``cells.cell_step`` name of a ``torch.nn`` RNN's cell."""
    if isinstance(rnn, nn.LSTM):
        return "lstm"
    if isinstance(rnn, nn.GRU):
        return "gru"
    return "rnn_relu" if rnn.nonlinearity == "relu" else "rnn"


def build_rnn(cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
              bidirectional: bool = False, dropout: float = 0.0, residual: bool = False,
              implementation: str = "torch") -> nn.Module:
    """A stacked RNN; plain ``torch.nn`` unless residual connections or reference cells are asked."""
    if implementation == "torch" and not residual:
        return torch_rnn(cell, input_size, hidden_size, num_layers, bidirectional, dropout)
    return LayeredRNN(cell, input_size, hidden_size, num_layers, bidirectional, dropout, residual,
                      implementation)


class LayeredRNN(nn.Module):
    """A stack of one-layer RNNs run one after the other (residual and/or reference cells)."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0, residual: bool = False,
                 implementation: str = "torch") -> None:
        super().__init__()
        self.cell, self.hidden_size, self.residual = cell, hidden_size, residual
        self.directions = 2 if bidirectional else 1
        self.dropout = Dropout(dropout)
        output_size = hidden_size * self.directions
        make = (lambda i: ReferenceLayer(cell, i, hidden_size, bidirectional)) \
            if implementation == "reference" else \
            (lambda i: torch_rnn(cell, i, hidden_size, 1, bidirectional))
        self.layers = nn.ModuleList(
            [make(input_size if k == 0 else output_size) for k in range(num_layers)])

    def forward(self, inputs: Union[Tensor, PackedSequence], hx: Optional[State] = None
                ) -> tuple[Union[Tensor, PackedSequence], State]:
        lengths: Optional[Tensor] = None  # set for a PackedSequence
        if isinstance(inputs, PackedSequence):
            x, lengths = pad_packed_sequence(inputs, batch_first=True)
        else:
            x = inputs
        with_c = has_cell_state(self.cell)
        layers, dirs, batch = len(self.layers), self.directions, x.size(0)
        if hx is None:
            zeros = x.new_zeros(layers * dirs, batch, self.hidden_size)
            hx = (zeros, zeros) if with_c else zeros
        h0, c0 = hx if isinstance(hx, tuple) else (hx, None)  # a tuple for LSTMs
        finals_h: list[Tensor] = []
        finals_c: list[Tensor] = []
        for k, layer in enumerate(self.layers):
            h_k = h0[k * dirs:(k + 1) * dirs]
            c_k = None if c0 is None else c0[k * dirs:(k + 1) * dirs]
            layer_in = x if k == 0 else self.dropout(x)  # dropout between layers, as torch.nn
            out, h_n, c_n = self._run_layer(layer, layer_in, lengths, h_k, c_k)
            x = out + x if self.residual and k > 0 else out
            finals_h.append(h_n)
            if c_n is not None:
                finals_c.append(c_n)
        h_n = torch.cat(finals_h)
        state: State = (h_n, torch.cat(finals_c)) if with_c else h_n
        if lengths is not None:
            return pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False), state
        return x, state

    @staticmethod
    def _run_layer(layer: nn.Module, x: Tensor, lengths: Optional[Tensor], h0: Tensor,
                   c0: Optional[Tensor]) -> tuple[Tensor, Tensor, Optional[Tensor]]:
        if isinstance(layer, ReferenceLayer):
            return layer(x, lengths, h0, c0)
        state = (h0, c0) if c0 is not None else h0
        if lengths is None:
            out, final = layer(x, state)
        else:
            packed_in = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            packed_out, final = layer(packed_in, state)
            out, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=x.size(1))
        if c0 is not None:
            return out, final[0], final[1]
        return out, final, None


def reversal_index(lengths: Tensor, length: int) -> Tensor:
    """[B, S] positions that reverse each row's first ``lengths[b]`` steps and leave its padding
    in place; applying it twice gives the identity."""
    positions = torch.arange(length, device=lengths.device).unsqueeze(0)
    reversed_positions = lengths.unsqueeze(1) - 1 - positions
    return torch.where(reversed_positions >= 0, reversed_positions, positions)


def _layer_run(rnn: nn.RNNBase, x: Tensor, layer: int, suffix: str) -> Tensor:
    """One direction of one layer of a ``torch.nn`` RNN over a padded batch [B, S, I]."""
    names = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if rnn.bias else ())
    params = [getattr(rnn, f"{name}_l{layer}{suffix}") for name in names]
    h0 = x.new_zeros(1, x.size(0), rnn.hidden_size)
    if isinstance(rnn, nn.LSTM):
        out, _, _ = torch._VF.lstm(x, (h0, h0), params, rnn.bias, 1, 0.0, rnn.training, False, True)
    elif isinstance(rnn, nn.GRU):
        out, _ = torch._VF.gru(x, h0, params, rnn.bias, 1, 0.0, rnn.training, False, True)
    else:
        run = torch._VF.rnn_relu if rnn.nonlinearity == "relu" else torch._VF.rnn_tanh
        out, _ = run(x, h0, params, rnn.bias, 1, 0.0, rnn.training, False, True)
    return out


def run_unpacked(rnn: nn.RNNBase, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """What ``rnn`` gives on a packed batch, computed on the padded one [B, S, I] (right padding).

    A packed bidirectional RNN runs step by step over shrinking batches on a CPU; the padded call
    is one oneDNN kernel per layer and direction, 22 % faster for an encoder's forward and backward
    on length-bucketed batches (BENCHMARKS.md). Padding after a row's last step cannot change its
    real steps, so the forward direction runs as is; the backward direction runs on each row
    reversed within its length and is reversed back. Returns the top layer's outputs [B, S, H *
    directions] (zeros on padding, as ``pad_packed_sequence`` gives) and the final hidden states
    [layers * directions, B, H] taken at each row's last real step, in ``torch.nn``'s order. The
    LSTM cell state is not returned (callers here use h only).
    """
    batch, length = x.shape[:2]
    last = (lengths - 1).view(batch, 1, 1).expand(-1, 1, rnn.hidden_size)
    # each direction's parameter suffix, and for the backward one the index that reverses the rows
    directions: list[tuple[str, Optional[Tensor]]] = [("", None)]
    if rnn.bidirectional:
        directions.append(("_reverse", reversal_index(lengths, length).unsqueeze(-1)))
    finals = []
    for layer in range(rnn.num_layers):
        if layer > 0:  # torch.nn's dropout between layers
            x = apply_dropout(x, rnn.dropout, rnn.training)
        outputs = []
        for suffix, reverse in directions:
            if reverse is not None:
                flipped = x.gather(1, reverse.expand(-1, -1, x.size(-1)))
                out = _layer_run(rnn, flipped, layer, suffix)
                finals.append(out.gather(1, last).squeeze(1))
                out = out.gather(1, reverse.expand(-1, -1, out.size(-1)))
            else:
                out = _layer_run(rnn, x, layer, suffix)
                finals.append(out.gather(1, last).squeeze(1))
            outputs.append(out)
        x = torch.cat(outputs, dim=-1) if len(outputs) > 1 else outputs[0]
    real = torch.arange(length, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)
    return x * real.unsqueeze(-1), torch.stack(finals)
