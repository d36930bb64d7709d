"""The two graphs an exported translation model runs: the encoder, and one decoder step.

Both are thin ``nn.Module`` views of a trained ``EncoderDecoder`` that compute the same numbers in
operations the ONNX exporter translates: no PackedSequence (the encoder runs each RNN layer over
the padded batch, the backward direction over each row reversed within its length, as
``run_unpacked`` does), the decoder's cells through the ``torch.nn`` RNN kernels. Their inputs and
outputs are plain tensors with names (``ENCODER_OUTPUTS``, ``step_inputs``), so that a runtime can
carry the decoder state between steps as a dict of arrays.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seq2seq.errors import CheckpointError
from seq2seq.models.cells import ReferenceLayer
from seq2seq.models.decoder import DecoderState, Memory
from seq2seq.models.encoder_decoder import EncoderDecoder
from seq2seq.models.rnn import REFERENCE_ONLY, LayeredRNN, has_cell_state, run_unpacked, torch_rnn
from seq2seq.tokenization import PAD

# What the encoder graph returns, in this order, less those the model has not got (keys without
# attention, cell for a GRU, feed without input feeding). Batch is axis 1 of hidden and cell.
ENCODER_OUTPUTS = ("states", "keys", "mask", "summary", "hidden", "cell", "feed")
# The decoder state a step reads and returns; the other encoder outputs are read-only memory.
RECURRENT = ("hidden", "cell", "feed")
STEP_OUTPUTS = ("log_probs", "attention")


def padded_layers(rnn: nn.Module, where: str) -> tuple[list[nn.RNNBase], bool]:
    """The encoder's stack as ``torch.nn`` RNNs that ``run_unpacked`` runs over a padded batch (one
    module for a plain stack, one per layer for a layered one: reference cells become ``torch.nn``
    modules of the same weights), and whether the layers are residual."""
    if isinstance(rnn, nn.RNNBase):
        return [rnn], False
    if not isinstance(rnn, LayeredRNN):
        raise CheckpointError(f"{where}: cannot export an encoder RNN of type {type(rnn).__name__}")
    layers: list[nn.RNNBase] = []
    for layer in rnn.layers:
        if isinstance(layer, ReferenceLayer):
            if layer.cell in REFERENCE_ONLY:
                raise CheckpointError(f"{where}: cell={layer.cell} has no ONNX kernel; export "
                                      "supports rnn, rnn_relu, gru and lstm")
            weight_ih = layer.get_parameter("weight_ih_l0")
            same = torch_rnn(layer.cell, weight_ih.size(1), layer.hidden_size, 1,
                             len(layer.suffixes) == 2)
            same.load_state_dict(layer.state_dict())  # the same names and layout (cells.py)
            layers.append(same.eval())
        elif isinstance(layer, nn.RNNBase):
            layers.append(layer)
        else:
            raise CheckpointError(f"{where}: cannot export an encoder layer of type "
                                  f"{type(layer).__name__}")
    return layers, rnn.residual


class EncoderGraph(nn.Module):
    """src [B, S] ids, src_len [B] -> the ``ENCODER_OUTPUTS`` the model has: the decoder's memory
    (encoder states [B, S, Hc], attention keys [B, S, A], mask [B, S], summary [B, Hc]) and its
    initial state (hidden, cell [layers, B, H], feed [B, R])."""

    def __init__(self, model: EncoderDecoder, where: str) -> None:
        super().__init__()
        self.encoder, self.decoder = model.encoder, model.decoder
        self.layers, self.residual = padded_layers(model.encoder.rnn, where)
        self._layers = nn.ModuleList(self.layers)  # converted reference layers: their weights

    def forward(self, src: Tensor, src_len: Tensor) -> tuple[Tensor, ...]:
        x = self.encoder.embedding(src)  # [B, S, E]; dropout is off in eval mode
        finals = []
        for k, layer in enumerate(self.layers):
            out, hidden = run_unpacked(layer, x, src_len)
            x = out + x if self.residual and k > 0 else out
            finals.append(hidden)
        hidden = torch.cat(finals) if len(finals) > 1 else finals[0]  # [layers*dirs, B, H]
        x, final = self.encoder.merge_directions(x, hidden)  # [B, S, O], [layers, B, O]
        keys = None if self.decoder.attention is None else self.decoder.attention.project_keys(x)
        memory = Memory(x, keys, src != PAD, final[-1])
        state = self.decoder.init_state(memory)
        values = (memory.states, memory.keys, memory.mask, memory.summary, state.hidden,
                  state.cell, state.feed)
        return tuple(value for value in values if value is not None)

    def output_names(self) -> list[str]:
        """The names of ``forward``'s outputs, in order."""
        present = {"keys": self.decoder.attention is not None, "cell": has_cell_state(self.decoder.cell),
                   "feed": self.decoder.input_feeding}
        return [name for name in ENCODER_OUTPUTS if present.get(name, True)]


class StepGraph(nn.Module):
    """One decoding step: prev [N] token ids and the encoder outputs named in ``input_names``
    (rows repeated or reordered by search) -> log_probs [N, K] over the scored ids (the kept ids
    of a restricted output layer, else every id), the next hidden/cell/feed, attention [N, S]."""

    def __init__(self, model: EncoderDecoder, encoder_outputs: list[str]) -> None:
        super().__init__()
        self.decoder = model.decoder
        self.input_names = ["prev", *encoder_outputs]
        # the kept rows of a restricted output layer, gathered once here rather than every step
        self.register_buffer("rows", self.decoder.output_layer.kept_rows().detach().clone())

    def forward(self, prev: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
        named: dict[str, Tensor] = dict(zip(self.input_names[1:], tensors))
        memory = Memory(named["states"], named.get("keys"), named["mask"], named["summary"],
                        self.get_buffer("rows"))
        state = DecoderState(named["hidden"], named.get("cell"), named.get("feed"))
        out = self.decoder.step(prev, state, memory, all_ids=False)
        log_probs = torch.log_softmax(out.logits.float(), dim=-1)
        returned = [log_probs]
        if out.attention is not None:
            returned.append(out.attention)
        returned += [value for value in out.state if value is not None]
        return tuple(returned)

    def output_names(self) -> list[str]:
        """The names of ``forward``'s outputs, in order (the state's as ``next_hidden``, ...)."""
        names = ["log_probs"] + (["attention"] if self.decoder.attention is not None else [])
        return names + [f"next_{name}" for name in RECURRENT if name in self.input_names]
