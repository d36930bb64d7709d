"""Recurrent cells written from their equations, for readers who want to see the recurrence.

Each cell keeps its weights in the layout ``torch.nn`` uses (``weight_ih``: the gates' input
weights stacked, ``weight_hh``: their recurrent weights, ``bias_ih``, ``bias_hh``), so weights move
between these cells and ``nn.RNN``/``nn.GRU``/``nn.LSTM`` unchanged; ``tests/test_cells.py`` checks
that both give the same outputs. They run one time step per Python call, so they are for reading
and experimenting (``model.encoder.implementation=reference``), not for speed. Two have no
``torch.nn`` counterpart: ``lstm_peephole`` (Gers & Schmidhuber, 2000) and ``gru_original``, the
GRU of Cho et al. (2014), whose reset gate acts before the recurrent matrix multiply.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

# Gates per cell: how many blocks of ``hidden_size`` rows weight_ih and weight_hh hold.
GATES = {"rnn": 1, "rnn_relu": 1, "gru": 3, "gru_original": 3, "lstm": 4, "lstm_peephole": 4}


def cell_step(cell: str, x: Tensor, h: Tensor, c: Optional[Tensor], weight_ih: Tensor,
              weight_hh: Tensor, bias_ih: Tensor, bias_hh: Tensor,
              peephole: Optional[Tensor] = None) -> tuple[Tensor, Optional[Tensor]]:
    """One time step of ``cell``. x: [B, I], h and c: [B, H]; returns the new (h, c), c None
    for cells without a cell state. Weights in torch.nn's layout (gates stacked by rows)."""
    gi = x @ weight_ih.T + bias_ih   # the input's contribution to every gate
    if cell == "gru_original":
        return _gru_original(gi, h, weight_hh, bias_hh), None
    gh = h @ weight_hh.T + bias_hh   # the previous state's
    if cell == "rnn":
        return torch.tanh(gi + gh), None       # h' = tanh(W x + b + U h + b')
    if cell == "rnn_relu":
        return torch.relu(gi + gh), None       # h' = relu(W x + b + U h + b')
    if cell == "gru":
        i_r, i_z, i_n = gi.chunk(3, dim=1)
        h_r, h_z, h_n = gh.chunk(3, dim=1)
        r = torch.sigmoid(i_r + h_r)           # reset gate
        z = torch.sigmoid(i_z + h_z)           # update gate
        n = torch.tanh(i_n + r * h_n)          # candidate: the reset gate scales U_n h + b_n
        return (1 - z) * n + z * h, None       # h' = (1 - z) * n + z * h
    if c is None:
        raise ValueError(f"cell={cell!r} needs its cell state c")
    i, f, g, o = (gi + gh).chunk(4, dim=1)     # input, forget, candidate, output
    if cell == "lstm":
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # forget, then write
        return torch.sigmoid(o) * torch.tanh(c), c                    # the output gate reads c'
    # Peephole LSTM (Gers & Schmidhuber, 2000): the gates also look at the cell state, through
    # diagonal weights (one per unit): input and forget gates at c, the output gate at c'.
    if peephole is None:
        raise ValueError("cell='lstm_peephole' needs its peephole weights")
    p_i, p_f, p_o = peephole
    c = torch.sigmoid(f + p_f * c) * c + torch.sigmoid(i + p_i * c) * torch.tanh(g)
    return torch.sigmoid(o + p_o * c) * torch.tanh(c), c


def _gru_original(gi: Tensor, h: Tensor, weight_hh: Tensor, bias_hh: Tensor) -> Tensor:
    """The GRU as Cho et al. (2014, eq. 5-8) wrote it: the reset gate scales h *before* the
    recurrent matrix, n = tanh(W_n x + b_n + U_n (r * h) + b'_n), where torch.nn (and cuDNN) scale
    its product, r * (U_n h + b'_n). gi: [B, 3H] the input's part of every gate; h: [B, H]."""
    w_r, w_z, w_n = weight_hh.chunk(3, dim=0)
    b_r, b_z, b_n = bias_hh.chunk(3)
    i_r, i_z, i_n = gi.chunk(3, dim=1)
    r = torch.sigmoid(i_r + h @ w_r.T + b_r)     # reset gate
    z = torch.sigmoid(i_z + h @ w_z.T + b_z)     # update gate
    n = torch.tanh(i_n + (r * h) @ w_n.T + b_n)  # candidate: reads the reset state r * h
    return (1 - z) * n + z * h


class ReferenceLayer(nn.Module):
    """One recurrent layer over a padded batch, one or both directions, step by step.

    Parameter names and shapes are those of a one-layer ``torch.nn`` RNN (``weight_ih_l0``,
    ``weight_hh_l0_reverse``, ...), so ``load_state_dict`` takes its weights directly.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int,
                 bidirectional: bool = False) -> None:
        super().__init__()
        self.cell, self.hidden_size = cell, hidden_size
        self.suffixes = ["", "_reverse"] if bidirectional else [""]
        rows = GATES[cell] * hidden_size
        bound = 1.0 / math.sqrt(hidden_size)  # torch.nn's initialisation
        for suffix in self.suffixes:
            shapes = {"weight_ih": (rows, input_size), "weight_hh": (rows, hidden_size),
                      "bias_ih": (rows,), "bias_hh": (rows,)}
            if cell == "lstm_peephole":
                shapes["peephole"] = (3, hidden_size)
            for name, shape in shapes.items():
                param = nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
                self.register_parameter(f"{name}_l0{suffix}", param)

    def _weights(self, suffix: str) -> dict[str, Tensor]:
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") + \
            (("peephole",) if self.cell == "lstm_peephole" else ())
        return {name: getattr(self, f"{name}_l0{suffix}") for name in names}

    def forward(self, x: Tensor, lengths: Optional[Tensor], h0: Tensor, c0: Optional[Tensor]
                ) -> tuple[Tensor, Tensor, Optional[Tensor]]:
        """x: [B, T, I]; lengths: [B] or None (all T); h0, c0: [dirs, B, H].

        Returns outputs [B, T, H*dirs] (zeros past each length) and the final h, c [dirs, B, H]:
        each direction's state after its last real token, as torch.nn gives for packed input.
        """
        batch, steps = x.shape[:2]
        if lengths is None:
            lengths = torch.full((batch,), steps, dtype=torch.long, device=x.device)
        positions = torch.arange(steps, device=lengths.device).unsqueeze(0)
        real = (positions < lengths.unsqueeze(1)).to(device=x.device, dtype=x.dtype)  # [B, T]
        outputs, finals_h, finals_c = [], [], []  # finals_c: only with a cell state
        for direction, suffix in enumerate(self.suffixes):
            weights = self._weights(suffix)
            h, c = h0[direction], None if c0 is None else c0[direction]
            per_step = [x.new_zeros(batch, self.hidden_size)] * steps
            # The reverse direction walks from the end; on padding the state just waits, so each
            # sentence is read backwards from its own last token.
            order = range(steps - 1, -1, -1) if direction == 1 else range(steps)
            for t in order:
                keep = real[:, t].unsqueeze(1)
                new_h, new_c = cell_step(self.cell, x[:, t], h, c, **weights)
                h = keep * new_h + (1 - keep) * h
                if c is not None and new_c is not None:
                    c = keep * new_c + (1 - keep) * c
                per_step[t] = keep * new_h
            outputs.append(torch.stack(per_step, dim=1))
            finals_h.append(h)
            if c is not None:
                finals_c.append(c)
        c_n = torch.stack(finals_c) if finals_c else None
        return torch.cat(outputs, dim=-1), torch.stack(finals_h), c_n
