"""RNNDecoder: a conditional RNN language model over the target, one ``step`` at a time.

Each step reads the previous target token (and, with input feeding, the previous attentional
vector), updates the RNN, attends over the encoder states (or, with ``attention="none"``, reads the
encoder's fixed summary vector c, as in Cho et al., 2014), and predicts the next token from
tanh(W [h; context]) (Luong et al., 2015, eq. 5).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple, Optional, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.errors import ConfigError, check_choice, check_range
from seq2seq.models.attention import AttentionName, build_attention
from seq2seq.models.dropout import Dropout, drop_tokens
from seq2seq.models.encoder import EncoderOutput
from seq2seq.models.output_layer import OutputLayer
from seq2seq.models.pretrained import check_pretrained_options, freeze_matched_rows
from seq2seq.models.rnn import Cell, build_rnn, check_rnn_options, has_cell_state, rnn_step
from seq2seq.tokenization import PAD

OutputVocabulary = Literal["all", "training_targets"]
OUTPUT_VOCABULARIES: tuple[str, ...] = get_args(OutputVocabulary)
# Where the first step's state comes from: the encoder's final state through the bridge (Bahdanau
# et al., 2015, appendix A.2.2: s_0 = tanh(W_s h_1 backward)), zeros, or a learned vector per layer
# (and an LSTM's cell state), the same for every sentence.
InitialState = Literal["bridge", "zeros", "learned"]
INITIAL_STATES: tuple[str, ...] = get_args(InitialState)


def resolve_initial_state(initial_state: Optional[str], bridge: Optional[bool]) -> str:
    """``initial_state``, read together with ``bridge``, the key it replaces: a config written
    before it holds ``bridge`` true/false and takes ``initial_state=bridge`` from the preset, so
    ``bridge=false`` turns that preset value into zeros; ``bridge=true`` with another choice is a
    contradiction."""
    if initial_state is None:
        initial_state = "bridge"
    check_choice("model.decoder.initial_state", initial_state, INITIAL_STATES)
    if bridge is None:
        return initial_state
    if bridge and initial_state != "bridge":
        raise ConfigError(f"model.decoder.bridge=true contradicts model.decoder.initial_state="
                          f"{initial_state}; drop bridge (initial_state replaces it)")
    return "zeros" if not bridge and initial_state == "bridge" else initial_state


class Memory(NamedTuple):
    """What the decoder reads from the encoder; fixed for a sentence."""

    states: Tensor          # [B, S, Hc] encoder states (attention values)
    keys: Optional[Tensor]  # [B, S, A] projected once per sentence; None without attention
    mask: Tensor            # [B, S] True on real tokens
    summary: Tensor         # [B, Hc] top-layer final encoder state: the context c without attention
    # A restricted output layer's kept rows, gathered once per batch when decoding (no gradient)
    output_weight: Optional[Tensor] = None

    def index_select(self, order: Tensor) -> "Memory":
        return Memory(self.states.index_select(0, order),
                      None if self.keys is None else self.keys.index_select(0, order),
                      self.mask.index_select(0, order), self.summary.index_select(0, order),
                      self.output_weight)


class DecoderState(NamedTuple):
    """The recurrent state carried between steps."""

    hidden: Tensor           # [layers, B, H]
    cell: Optional[Tensor]   # [layers, B, H] LSTM cell state, else None
    feed: Optional[Tensor]   # [B, R] previous attentional vector (input feeding), else None

    def index_select(self, order: Tensor) -> "DecoderState":
        """Reorder or repeat the batch, without knowing what the state holds (beam search)."""
        def pick(t: Optional[Tensor], dim: int) -> Optional[Tensor]:
            return None if t is None else t.index_select(dim, order)
        return DecoderState(self.hidden.index_select(1, order), pick(self.cell, 1), pick(self.feed, 0))


class StepOutput(NamedTuple):
    logits: Tensor                # [B, V] unnormalized next-token scores
    state: DecoderState
    attention: Optional[Tensor]   # [B, S] attention weights, None without attention


class DecoderOutput(NamedTuple):
    logits: Optional[Tensor]      # [B, T, V], or [N, V] at the N positions of an output_mask
    attention: Optional[Tensor]   # [B, T, S]
    # With project=False, the readouts the output layer would score ([B, T, R] or [N, R]),
    # for ``output_loss``; logits is then None.
    readout: Optional[Tensor] = None


class RNNDecoder(nn.Module):
    """A stacked RNN/GRU/LSTM decoder with optional attention and input feeding."""

    def __init__(self, vocab_size: int, context_size: int, *, attention: AttentionName,
                 cell: Cell, embedding_dim: int, hidden_size: int, num_layers: int,
                 dropout: float, input_feeding: bool, tie_embeddings: bool,
                 residual: bool, implementation: str, word_dropout: float,
                 output_vocabulary: OutputVocabulary, bridge: Optional[bool] = None,
                 initial_state: Optional[InitialState] = None,
                 pretrained_embeddings: Optional[str] = None,
                 freeze_embeddings: bool = False) -> None:
        """``vocab_size``, ``context_size`` and ``attention`` come from the model; the other
        options are ``conf/model/decoder``'s (the defaults here are only those of configs
        written before an option existed).
        ``word_dropout``: in training, each reference input token is read as UNK with this
        probability (``drop_tokens``; the targets the loss scores stay whole).
        ``output_vocabulary``: "training_targets" asks the pipeline to restrict the output layer
        (``restrict_output``) to the pieces its training targets use; "all" scores every id.
        ``initial_state``: bridge | zeros | learned (``bridge`` true/false: its older spelling,
        ``resolve_initial_state``). ``pretrained_embeddings``, ``freeze_embeddings``: as the
        encoder's (``seq2seq/models/pretrained.py``)."""
        super().__init__()
        self.initial_state = resolve_initial_state(initial_state, bridge)
        check_pretrained_options("model.decoder", pretrained_embeddings, freeze_embeddings)
        check_choice("model.decoder.output_vocabulary", output_vocabulary, OUTPUT_VOCABULARIES)
        self.output_vocabulary = output_vocabulary
        check_rnn_options(cell, hidden_size, num_layers, dropout, "model.decoder", implementation)
        check_range("model.decoder.embedding_dim", embedding_dim, 1)
        check_range("model.decoder.word_dropout", word_dropout, 0.0, 1.0)
        self.word_dropout = word_dropout
        self.cell, self.num_layers, self.hidden_size = cell, num_layers, hidden_size
        self.vocab_size = vocab_size
        self.attention = build_attention(attention, hidden_size, context_size, hidden_size)
        self.input_feeding = input_feeding
        # Tied embeddings need the readout to live in the embedding space.
        self.readout_size = embedding_dim if tie_embeddings else hidden_size
        # Without attention, c is read at every step (Cho et al., 2014, section 2.2).
        rnn_input = embedding_dim + (self.readout_size if input_feeding else 0) + \
            (context_size if self.attention is None else 0)
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD)
        self.pretrained_embeddings, self.freeze_embeddings = pretrained_embeddings, freeze_embeddings
        if freeze_embeddings:
            freeze_matched_rows(self, self.embedding)
        self.dropout = Dropout(dropout)
        self.rnn = build_rnn(cell, rnn_input, hidden_size, num_layers, False, dropout, residual,
                             implementation)
        self.bridge = nn.Linear(context_size, num_layers * hidden_size) \
            if self.initial_state == "bridge" else None
        # learned: zeros at first (where "zeros" stays), then trained like any weight
        self.learned_hidden = nn.Parameter(torch.zeros(num_layers, hidden_size)) \
            if self.initial_state == "learned" else None
        self.learned_cell = nn.Parameter(torch.zeros(num_layers, hidden_size)) \
            if self.initial_state == "learned" and has_cell_state(cell) else None
        self.readout = nn.Linear(hidden_size + context_size, self.readout_size)
        self.output_layer = OutputLayer(self.readout_size, vocab_size)
        if tie_embeddings:
            self.output_layer.weight = self.embedding.weight

    def restrict_output(self, ids: Tensor) -> Tensor:
        """Score only the target ids ``ids`` (``OutputLayer.restrict``): logits of ``forward`` are
        then over the kept ids (map the targets with ``output_layer.columns``), and ``step``
        returns logits over every id (-inf for those left out) or, for search, over these only.
        Returns the kept ids [K]."""
        return self.output_layer.restrict(ids)

    @property
    def output_ids(self) -> Optional[Tensor]:
        """[K] the ids a restricted output layer scores, ascending; None: every id."""
        return self.output_layer.output_ids

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              local_metadata: dict[str, Any], strict: bool, missing_keys: list[str],
                              unexpected_keys: list[str], error_msgs: list[str]) -> None:
        # Checkpoints saved before the output layer was a module of its own hold its kept ids at
        # decoder.output_ids; the layer (loaded after this) reads them at its own key.
        saved = state_dict.pop(prefix + "output_ids", None)
        if saved is not None:
            state_dict.setdefault(prefix + "output_layer.output_ids", saved)
        if self.output_vocabulary == "all" and self.output_ids is None \
                and prefix + "output_layer.output_ids" in state_dict:
            error_msgs.append(f"{prefix}output_layer.output_ids: the saved output layer scores the "
                              "training targets' ids only, this model every id (set "
                              "model.decoder.output_vocabulary=training_targets)")
            return
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def memory(self, encoded: EncoderOutput) -> Memory:
        """Prepare the encoder output for decoding (keys projected once per sentence)."""
        keys = None if self.attention is None else self.attention.project_keys(encoded.states)
        # Decoding steps read the kept rows of a restricted output layer from here: gathered
        # once per batch instead of at every step.
        return Memory(encoded.states, keys, encoded.mask, encoded.final[-1],
                      self.output_layer.decoding_rows())

    def init_state(self, memory: Memory) -> DecoderState:
        """The state step 0 starts from (``initial_state``): the encoder summary [B, Hc] through
        the bridge, zeros, or the learned vectors repeated over the batch; hidden (and an LSTM's
        cell) [layers, B, H]."""
        batch = memory.summary.size(0)
        cell: Optional[Tensor] = None
        if self.learned_hidden is not None:
            hidden = self.learned_hidden.unsqueeze(1).expand(-1, batch, -1).contiguous()
            if self.learned_cell is not None:
                cell = self.learned_cell.unsqueeze(1).expand(-1, batch, -1).contiguous()
        elif self.bridge is None:
            hidden = memory.summary.new_zeros(self.num_layers, batch, self.hidden_size)
        else:
            hidden = torch.tanh(self.bridge(memory.summary))  # [B, layers*H]
            hidden = hidden.view(batch, self.num_layers, self.hidden_size).transpose(0, 1)
            hidden = hidden.contiguous()
        if cell is None and has_cell_state(self.cell):
            cell = hidden  # bridge and zeros: the cell state starts as h
        feed = memory.summary.new_zeros(batch, self.readout_size) if self.input_feeding else None
        return DecoderState(hidden, cell, feed)

    def _rnn_input(self, embedded: Tensor, state: DecoderState, memory: Memory) -> Tensor:
        parts = [embedded]
        if state.feed is not None:  # input feeding
            parts.append(state.feed.unsqueeze(1).expand(-1, embedded.size(1), -1))
        if self.attention is None:
            parts.append(memory.summary.unsqueeze(1).expand(-1, embedded.size(1), -1))
        return torch.cat(parts, dim=-1) if len(parts) > 1 else embedded

    def _run(self, embedded: Tensor, state: DecoderState, memory: Memory
             ) -> tuple[Tensor, DecoderState, Optional[Tensor]]:
        """Run the RNN over embedded [B, T, E] inputs; return readouts [B, T, R]."""
        rnn_in = self._rnn_input(embedded, state, memory)
        if rnn_in.size(1) == 1 and isinstance(self.rnn, nn.RNNBase):
            out, hidden, cell = rnn_step(self.rnn, rnn_in[:, 0], state.hidden, state.cell)
            outputs = out.unsqueeze(1)
        elif has_cell_state(self.cell):
            outputs, (hidden, cell) = self.rnn(rnn_in, (state.hidden, state.cell))
        else:
            outputs, hidden = self.rnn(rnn_in, state.hidden)
            cell = None
        return self._read(outputs, hidden, cell, memory)

    def _run_known(self, rnn: nn.RNNBase, gates: Tensor, rest_weight: Tensor, state: DecoderState,
                   memory: Memory) -> tuple[Tensor, DecoderState, Optional[Tensor]]:
        """One teacher-forced step of ``rnn`` (``self.rnn``) whose embedding part of the input
        projection, ``gates`` [B, G], was computed for all steps at once (``_embedding_gates``);
        the rest of the input is the fed-back attentional vector (and c without attention)."""
        if state.feed is None:
            raise ValueError("_run_known needs a decoder with input feeding")
        parts = [state.feed] + ([memory.summary] if self.attention is None else [])
        rest = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]
        out, hidden, cell = rnn_step(rnn, rest, state.hidden, state.cell,
                                     first_layer=(rest_weight, gates))
        return self._read(out.unsqueeze(1), hidden, cell, memory)

    @staticmethod
    def _embedding_gates(rnn: nn.RNNBase, embedded: Tensor) -> tuple[tuple[Tensor, ...], Tensor]:
        """Layer 0's input projection of the embeddings [B, T, E] for all steps in one matmul (T
        x [B, G], bias included), and the columns of W_ih left for the other inputs."""
        w_ih = rnn.get_parameter("weight_ih_l0")
        w_embedding, w_rest = w_ih.split([embedded.size(-1), w_ih.size(1) - embedded.size(-1)], 1)
        return F.linear(embedded, w_embedding, rnn.get_parameter("bias_ih_l0")).unbind(1), w_rest

    def _read(self, outputs: Tensor, hidden: Tensor, cell: Optional[Tensor], memory: Memory
              ) -> tuple[Tensor, DecoderState, Optional[Tensor]]:
        """Attention and the readout tanh(W [h; context]) over RNN outputs [B, T, H]."""
        if self.attention is None:
            context = memory.summary.unsqueeze(1).expand(-1, outputs.size(1), -1)
            weights = None
        else:
            context, weights = self.attention(outputs, memory.keys, memory.states, memory.mask)
        readout = self.dropout(torch.tanh(self.readout(torch.cat([outputs, context], dim=-1))))
        feed = readout[:, -1] if self.input_feeding else None
        return readout, DecoderState(hidden, cell, feed), weights

    def step(self, prev_tokens: Tensor, state: DecoderState, memory: Memory,
             all_ids: bool = True) -> StepOutput:
        """One decoding step. prev_tokens: [B] ids of the previous output (BOS at the start).
        With a restricted output layer, logits over every id (-inf for those left out), or with
        ``all_ids=False`` over ``output_ids`` only (what search uses)."""
        embedded = self.dropout(self.embedding(prev_tokens.unsqueeze(1)))  # [B, 1, E]
        readout, state, weights = self._run(embedded, state, memory)
        logits = self.output_layer(readout.squeeze(1), memory.output_weight)
        if all_ids:
            logits = self.output_layer.scatter(logits)
        return StepOutput(logits, state, None if weights is None else weights.squeeze(1))

    def forward(self, tgt_in: Tensor, memory: Memory, state: DecoderState,
                teacher_forcing_ratio: float = 1.0, output_mask: Optional[Tensor] = None,
                project: bool = True) -> DecoderOutput:
        """Unroll over the target. tgt_in: [B, T] BOS + reference ids.

        ``output_mask`` [B, T]: compute the logits only where it is true (the training loss skips
        padded positions, ~5 % of an [B, T, V] output layer), returned as [N, V] in row-major order.
        ``project=False``: return the readouts instead of their logits (``DecoderOutput.readout``),
        for ``output_loss``, which scores them without building the logits.

        With ratio 1 every step reads the reference token (teacher forcing); otherwise each step,
        for each sentence, reads the reference with probability ``teacher_forcing_ratio`` and the
        model's own previous prediction (argmax) otherwise (scheduled sampling, Bengio et al., 2015).
        """
        tgt_in = drop_tokens(tgt_in, self.word_dropout, self.training)
        if teacher_forcing_ratio >= 1.0 and not self.input_feeding:
            # Every input is known in advance: one RNN call over the whole target (oneDNN/cuDNN
            # kernels) and attention for all steps in one batched matmul.
            readout, _, attention = self._run(self.dropout(self.embedding(tgt_in)), state, memory)
            return self._output(readout, output_mask, project, attention)
        sampling = teacher_forcing_ratio < 1.0
        embedded = self.dropout(self.embedding(tgt_in))  # [B, T, E], reference inputs
        if not sampling and isinstance(self.rnn, nn.RNNBase):
            return self._forward_known(self.rnn, embedded, state, memory, output_mask, project)
        # unbind, not embedded[:, t]: slicing would give each step's gradient the full [B, T, E]
        # shape, zero-filled and summed T times in the backward pass.
        references = embedded.unbind(1)
        readouts: list[Tensor] = []
        logits: list[Tensor] = []
        weights: list[Tensor] = []  # none without attention
        for t in range(tgt_in.size(1)):
            reference = references[t].unsqueeze(1)
            if not logits:
                step_in = reference
            else:
                predicted_ids = self.output_layer.ids(logits[-1].argmax(-1, keepdim=True))
                predicted = self.dropout(self.embedding(predicted_ids))
                use_reference = torch.rand(tgt_in.size(0), 1, 1, device=tgt_in.device) < teacher_forcing_ratio
                step_in = torch.where(use_reference, reference, predicted)
            readout, state, step_weights = self._run(step_in, state, memory)
            readouts.append(readout)
            if sampling:  # the next step may read this step's prediction
                logits.append(self.output_layer(readout.squeeze(1)))
            if step_weights is not None:
                weights.append(step_weights)
        attention = torch.cat(weights, dim=1) if weights else None
        if sampling and project:
            stacked = torch.stack(logits, dim=1)
            return DecoderOutput(stacked if output_mask is None else stacked[output_mask], attention)
        # Under teacher forcing the output layer runs once, over all steps together.
        return self._output(torch.cat(readouts, dim=1), output_mask, project, attention)

    def _forward_known(self, rnn: nn.RNNBase, embedded: Tensor, state: DecoderState, memory: Memory,
                       output_mask: Optional[Tensor], project: bool) -> DecoderOutput:
        """Teacher forcing with input feeding: only the embedding part of each step's input is
        known in advance, so its projection is done for all steps in one matmul and the loop does
        the rest (fewer, larger matmuls than projecting [embedding; feed] step by step). ``rnn``:
        ``self.rnn``, a ``torch.nn`` RNN."""
        gates, rest_weight = self._embedding_gates(rnn, embedded)
        readouts: list[Tensor] = []
        weights: list[Tensor] = []  # none without attention
        for step_gates in gates:
            readout, state, step_weights = self._run_known(rnn, step_gates, rest_weight, state, memory)
            readouts.append(readout)
            if step_weights is not None:
                weights.append(step_weights)
        attention = torch.cat(weights, dim=1) if weights else None
        return self._output(torch.cat(readouts, dim=1), output_mask, project, attention)

    def _output(self, readout: Tensor, output_mask: Optional[Tensor], project: bool,
                attention: Optional[Tensor]) -> DecoderOutput:
        """Logits of readouts [B, T, R] (or, ``project=False``, the readouts themselves), at the
        positions of ``output_mask`` only when given."""
        if output_mask is not None:
            readout = readout[output_mask]
        if not project:
            return DecoderOutput(None, attention, readout)
        return DecoderOutput(self.output_layer(readout), attention)

    def output_loss(self, readout: Tensor, targets: Tensor, smoothing: float = 0.0) -> Tensor:
        """The label-smoothed cross-entropy, summed, of the output layer over readouts [N, R]
        (``forward(..., project=False)``) against target ids [N], without building the logits
        (``OutputLayer.loss``)."""
        return self.output_layer.loss(readout, targets, smoothing)
