"""Model variants: summed bidirectional outputs, the original GRU, a learned initial decoder state,
the peephole LSTM in the decoder (vocab 11, E 4, H 3, B 2, S 5)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from seq2seq.config import build, stored_model_config
from seq2seq.errors import ConfigError
from seq2seq.models.cells import ReferenceLayer, cell_step
from seq2seq.models.decoder import RNNDecoder
from seq2seq.models.encoder import RNNEncoder
from seq2seq.models.encoder_decoder import EncoderDecoder
from seq2seq.models.rnn import LayeredRNN
from seq2seq.tokenization import PAD

V, E, H = 11, 4, 3


def encoder(merge="concat", cell="gru", implementation="torch", layers=2) -> RNNEncoder:
    torch.manual_seed(0)
    return RNNEncoder(V, cell=cell, embedding_dim=E, hidden_size=H, num_layers=layers,
                      bidirectional=True, dropout=0.0, residual=False,
                      implementation=implementation, word_dropout=0.0, merge=merge).eval()


def decoder(vocab_size=V, context_size=2 * H, attention="bahdanau", cell="gru", layers=2,
            implementation="torch", input_feeding=False, **state) -> RNNDecoder:
    return RNNDecoder(vocab_size, context_size, attention=attention, cell=cell, embedding_dim=E,
                      hidden_size=5, num_layers=layers, dropout=0.0, input_feeding=input_feeding,
                      tie_embeddings=False, residual=False, implementation=implementation,
                      word_dropout=0.0, output_vocabulary="all", **state)


# Full rows take the padded (unpacked) path of a torch.nn encoder; a short row, the packed one.
BATCHES = {"unpacked": (torch.tensor([[4, 5, 6, 7, 3], [8, 9, 10, 4, 3]]), torch.tensor([5, 5])),
           "packed": (torch.tensor([[4, 5, 6, 7, 3], [8, 3, PAD, PAD, PAD]]), torch.tensor([5, 2]))}


@pytest.mark.parametrize("path", ["unpacked", "packed"])
@pytest.mark.parametrize("implementation", ["torch", "reference"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_summed_directions_are_the_sum_of_the_concatenated_halves(path, implementation, cell):
    concat = encoder("concat", cell, implementation)
    summed = encoder("sum", cell, implementation)
    summed.load_state_dict(concat.state_dict())  # merge adds no weights
    src, src_len = BATCHES[path]
    whole, added = concat(src, src_len), summed(src, src_len)
    assert summed.output_size == H and concat.output_size == 2 * H
    assert added.states.shape == (2, 5, H) and added.final.shape == (2, 2, H)
    torch.testing.assert_close(added.states, whole.states[..., :H] + whole.states[..., H:])
    torch.testing.assert_close(added.final, whole.final[..., :H] + whole.final[..., H:])
    assert added.states[1, src_len[1]:].abs().sum() == 0  # padding stays zero


def test_a_summed_encoder_sizes_the_decoders_bridge_and_attention():
    model = EncoderDecoder(lambda vocab_size: encoder("sum"),
                           lambda vocab_size, context_size, attention: decoder(
                               vocab_size, context_size, attention), V, V,
                           attention="bahdanau", share_embeddings=False).eval()
    assert model.decoder.bridge is not None and model.decoder.bridge.in_features == H
    src, src_len = BATCHES["packed"]
    logits = model(src, src_len, torch.tensor([[2, 5, 6], [2, 7, 8]])).logits
    assert logits.shape == (2, 3, V)


def test_a_bad_merge_and_a_summed_span_tagger_are_named():
    with pytest.raises(ConfigError, match="model.encoder.merge='mean'"):
        encoder("mean")
    from seq2seq.models.labelling import SequenceTagger
    with pytest.raises(ConfigError, match="model.word_state=span"):
        SequenceTagger(V, 3, lambda vocab_size, extra_input_size: encoder("sum"), num_labels=0,
                       num_lexicon=0, num_words=0, joint=False, pooling="final", hidden_size=4,
                       dropout=0.0, word_state="span", byte_features=0, crf=False,
                       word_dropout=0.0, lexicon_features=0, word_embeddings=0)


def test_the_original_gru_follows_cho_et_al():
    torch.manual_seed(0)
    layer = ReferenceLayer("gru_original", 4, H)
    w = layer._weights("")
    x, h = torch.randn(2, 4), torch.randn(2, H)
    W_r, W_z, W_n = w["weight_ih"].chunk(3)
    U_r, U_z, U_n = w["weight_hh"].chunk(3)
    b_r, b_z, b_n = w["bias_ih"].chunk(3)
    c_r, c_z, c_n = w["bias_hh"].chunk(3)
    r = torch.sigmoid(x @ W_r.T + b_r + h @ U_r.T + c_r)
    z = torch.sigmoid(x @ W_z.T + b_z + h @ U_z.T + c_z)
    n = torch.tanh(x @ W_n.T + b_n + (r * h) @ U_n.T + c_n)  # r resets h before U_n
    expected = (1 - z) * n + z * h
    ours, no_cell = cell_step("gru_original", x, h, None, **w)
    torch.testing.assert_close(ours, expected)
    assert no_cell is None
    torch_form, _ = cell_step("gru", x, h, None, **w)  # r * (U_n h + c_n): another function
    assert not torch.allclose(ours, torch_form)


def test_the_original_gru_runs_a_padded_bidirectional_stack_as_its_cells():
    torch.manual_seed(0)
    rnn = LayeredRNN("gru_original", 4, H, bidirectional=True, implementation="reference")
    x = torch.randn(2, 5, 4)
    out, h_n = rnn(x)
    layer = rnn.layers[0]
    h = torch.zeros(2, H)
    for t in range(5):  # the forward direction, one equation step at a time
        h, _ = cell_step("gru_original", x[:, t], h, None, **layer._weights(""))
        torch.testing.assert_close(out[:, t, :H], h)
    torch.testing.assert_close(h_n[0], h)


@pytest.mark.parametrize("side", ["encoder", "decoder"])
def test_the_original_gru_needs_the_reference_implementation(side):
    with pytest.raises(ConfigError, match=f"model.{side}.implementation=reference"):
        if side == "encoder":
            encoder(cell="gru_original")
        else:
            decoder(cell="gru_original")


def memory_for(model_decoder: RNNDecoder, context_size: int = 2 * H):
    torch.manual_seed(1)
    from seq2seq.models.encoder import EncoderOutput
    states = torch.randn(2, 5, context_size)
    mask = torch.tensor([[True] * 5, [True] * 2 + [False] * 3])
    return model_decoder.memory(EncoderOutput(states, torch.randn(2, 2, context_size), mask))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_learned_initial_state_is_a_trained_parameter_that_step_0_starts_from(cell):
    torch.manual_seed(0)
    dec = decoder(cell=cell, initial_state="learned")
    assert dec.bridge is None
    learned = {name for name, _ in dec.named_parameters() if name.startswith("learned_")}
    assert learned == ({"learned_hidden", "learned_cell"} if cell == "lstm" else {"learned_hidden"})
    with torch.no_grad():
        dec.learned_hidden.copy_(torch.randn(2, 5))
        if dec.learned_cell is not None:
            dec.learned_cell.copy_(torch.randn(2, 5))
    memory = memory_for(dec)
    state = dec.init_state(memory)
    torch.testing.assert_close(state.hidden, dec.learned_hidden.unsqueeze(1).expand(-1, 2, -1))
    if cell == "lstm":
        torch.testing.assert_close(state.cell, dec.learned_cell.unsqueeze(1).expand(-1, 2, -1))
    # step 0 from the learned state is step 0 from those values given by hand
    bos = torch.tensor([2, 2])
    by_hand = type(state)(state.hidden.detach().clone(),
                          None if state.cell is None else state.cell.detach().clone(), None)
    torch.testing.assert_close(dec.step(bos, state, memory).logits,
                               dec.step(bos, by_hand, memory).logits)
    dec(torch.tensor([[2, 5, 6], [2, 7, PAD]]), memory, state).logits.sum().backward()
    assert dec.learned_hidden.grad is not None and dec.learned_hidden.grad.abs().sum() > 0
    if dec.learned_cell is not None:
        assert dec.learned_cell.grad is not None and dec.learned_cell.grad.abs().sum() > 0


def test_zeros_start_from_zeros_without_a_bridge():
    dec = decoder(cell="lstm", initial_state="zeros")
    assert dec.bridge is None and dec.learned_hidden is None
    state = dec.init_state(memory_for(dec))
    assert state.hidden.abs().sum() == 0 and state.cell is not None and state.cell.abs().sum() == 0


@pytest.mark.parametrize("bridge,initial_state,expected", [
    (True, None, "bridge"), (False, None, "zeros"), (None, None, "bridge"),
    (True, "bridge", "bridge"), (False, "bridge", "zeros"), (False, "learned", "learned"),
    (None, "learned", "learned")])
def test_the_older_bridge_key_still_decides(bridge, initial_state, expected):
    assert decoder(bridge=bridge, initial_state=initial_state).initial_state == expected


def test_bridge_true_with_another_initial_state_and_a_bad_choice_are_named():
    with pytest.raises(ConfigError, match="model.decoder.bridge=true contradicts"):
        decoder(bridge=True, initial_state="learned")
    with pytest.raises(ConfigError, match="model.decoder.initial_state='encoder'"):
        decoder(initial_state="encoder")


@pytest.mark.parametrize("bridge", [True, False])
def test_a_checkpoint_config_with_bridge_builds_and_loads_its_weights(bridge):
    """A model config written before initial_state/merge/pretrained_embeddings existed."""
    common = {"embedding_dim": E, "num_layers": 1, "dropout": 0.0, "residual": False,
              "word_dropout": 0.0, "implementation": "torch", "cell": "gru", "_partial_": True}
    old = {"_target_": "seq2seq.models.encoder_decoder.EncoderDecoder", "attention": "bahdanau",
           "share_embeddings": False,
           "encoder": {"_target_": "seq2seq.models.encoder.RNNEncoder", "hidden_size": H,
                       "bidirectional": True, **common},
           "decoder": {"_target_": "seq2seq.models.decoder.RNNDecoder", "hidden_size": 5,
                       "input_feeding": False, "bridge": bridge, "tie_embeddings": False,
                       "output_vocabulary": "all", **common}}
    filled = stored_model_config(OmegaConf.create(old))
    assert filled.decoder.initial_state == "bridge" and filled.encoder.merge == "concat"
    model = build(filled, src_vocab_size=V, tgt_vocab_size=V)
    assert model.decoder.initial_state == ("bridge" if bridge else "zeros")
    torch.manual_seed(0)
    saved = EncoderDecoder(
        lambda vocab_size: RNNEncoder(vocab_size, cell="gru", embedding_dim=E, hidden_size=H,
                                      num_layers=1, bidirectional=True, dropout=0.0,
                                      residual=False, implementation="torch", word_dropout=0.0),
        lambda vocab_size, context_size, attention: RNNDecoder(
            vocab_size, context_size, attention=attention, cell="gru", embedding_dim=E,
            hidden_size=5, num_layers=1, dropout=0.0, input_feeding=False, bridge=bridge,
            tie_embeddings=False, residual=False, implementation="torch", word_dropout=0.0,
            output_vocabulary="all"), V, V, attention="bahdanau", share_embeddings=False)
    model.load_state_dict(saved.state_dict())  # strict: the same parameters


def peephole_decoder() -> RNNDecoder:
    torch.manual_seed(0)
    return decoder(cell="lstm_peephole", implementation="reference", input_feeding=True)


def test_a_peephole_decoder_uses_and_trains_its_peephole_weights():
    dec = peephole_decoder().eval()
    peepholes = {name: p for name, p in dec.named_parameters() if "peephole" in name}
    assert set(peepholes) == {"rnn.layers.0.peephole_l0", "rnn.layers.1.peephole_l0"}
    memory = memory_for(dec)
    tgt_in = torch.tensor([[2, 5, 6, 7], [2, 7, 8, PAD]])
    logits = dec(tgt_in, memory, dec.init_state(memory)).logits
    logits.logsumexp(-1).sum().backward()
    for name, param in peepholes.items():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    # decoding step by step reads the same cells as the teacher-forced unroll
    state = dec.init_state(memory)
    with torch.no_grad():
        for t in range(tgt_in.size(1)):
            out = dec.step(tgt_in[:, t], state, memory)
            torch.testing.assert_close(out.logits, logits[:, t].detach(), atol=1e-5, rtol=0)
            state = out.state
        for param in peepholes.values():
            param.zero_()  # without peepholes: another function of the same inputs
        plain = dec(tgt_in, memory, dec.init_state(memory)).logits
    assert not torch.allclose(plain, logits.detach(), atol=1e-4)


@pytest.mark.slow
def test_a_peephole_decoder_learns_a_sequence_and_moves_its_peepholes():
    dec = peephole_decoder().train()
    tgt_in, tgt_out = torch.tensor([[2, 5, 6, 7], [2, 7, 8, 9]]), torch.tensor([[5, 6, 7, 3],
                                                                                [7, 8, 9, 3]])
    before = {n: p.detach().clone() for n, p in dec.named_parameters() if "peephole" in n}
    optimizer = torch.optim.Adam(dec.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        memory = memory_for(dec)  # the attention keys: projected by the weights being trained
        logits = dec(tgt_in, memory, dec.init_state(memory)).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), tgt_out.reshape(-1))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    for name, value in before.items():
        assert not torch.allclose(dec.get_parameter(name), value), name


@pytest.mark.parametrize("overrides", [
    ["model.encoder.merge=sum", "model.decoder.initial_state=learned"],
    ["model.encoder.merge=sum", "model.encoder.cell=lstm", "model.decoder.cell=lstm",
     "model.encoder.num_layers=2", "model.decoder.num_layers=2",
     "model.decoder.initial_state=learned", "model.decoder.input_feeding=true"]],
    ids=["gru", "lstm_feeding"])
def test_a_summed_learned_start_model_exports_to_onnx_graphs_that_agree(overrides, tmp_path):
    pytest.importorskip("onnxruntime")
    from seq2seq.export.onnx_export import export_graphs
    from seq2seq.export.onnx_runtime import OnnxStepper, OnnxTranslationModel
    from seq2seq.search import ModelStepper
    from seq2seq.tokenization import BOS, EOS
    from seq2seq.translate import build_translation_model
    from tests.conftest import compose_train

    cfg = compose_train(["model.encoder.embedding_dim=8", "model.encoder.hidden_size=6",
                         "model.decoder.embedding_dim=8", "model.decoder.hidden_size=7", *overrides])
    torch.manual_seed(0)
    model = build_translation_model(cfg.model, 23, 23).eval()
    with torch.no_grad():  # a learned start that is not the zeros it is initialised with
        model.decoder.learned_hidden.normal_()
    onnx_model = OnnxTranslationModel(tmp_path, export_graphs(model, tmp_path, "variant"), None)
    src = torch.tensor([[5, 6, 7, 8, EOS], [11, 12, EOS, 0, 0], [14, EOS, 0, 0, 0]])
    src_len = torch.tensor([5, 3, 2])
    with torch.inference_mode():
        memory, state = model.encode(src, src_len)
        arrays = OnnxStepper(onnx_model).start(src, src_len).arrays
        torch.testing.assert_close(torch.from_numpy(arrays["states"]), memory.states)
        torch.testing.assert_close(torch.from_numpy(arrays["hidden"]), state.hidden)
        torch_stepper, onnx_stepper = ModelStepper(model), OnnxStepper(onnx_model)
        torch_state, onnx_state = torch_stepper.start(src, src_len), onnx_stepper.start(src, src_len)
        prev = torch.full((3,), BOS)
        for _ in range(2):
            log_p, torch_state, _ = torch_stepper.step(prev, torch_state)
            onnx_log_p, onnx_state, _ = onnx_stepper.step(prev, onnx_state)
            torch.testing.assert_close(onnx_log_p, log_p, atol=1e-5, rtol=1e-4)
            prev = log_p.argmax(-1)


def test_the_original_gru_is_refused_by_the_export_by_name(tmp_path):
    from seq2seq.errors import CheckpointError
    from seq2seq.export.onnx_export import export_graphs
    from seq2seq.translate import build_translation_model
    from tests.conftest import compose_train

    cfg = compose_train(["model.encoder.cell=gru_original", "model.encoder.implementation=reference"])
    model = build_translation_model(cfg.model, 23, 23).eval()
    with pytest.raises(CheckpointError, match="cell=gru_original has no ONNX kernel"):
        export_graphs(model, tmp_path, "variant")
