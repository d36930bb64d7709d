"""Encoder, attention and decoder on tiny tensors (vocab 11, E 4, H 3, B 2, S 5)."""

import itertools
import math

import pytest
import torch

from seq2seq.errors import ConfigError
from seq2seq.models.attention import BahdanauAttention, LuongAttention
from seq2seq.models.cross_entropy import smoothed_cross_entropy
from seq2seq.models.decoder import RNNDecoder
from seq2seq.models.encoder import RNNEncoder
from seq2seq.models.encoder_decoder import EncoderDecoder
from seq2seq.models.output_layer import OutputLayer
from seq2seq.tokenization import PAD

V, E, H = 11, 4, 3


def tiny_model(cell="gru", attention="bahdanau", bidirectional=True, input_feeding=False,
               layers=1, tie=False, share=False, src_vocab=V, src_embedding=E,
               output_vocabulary="all") -> EncoderDecoder:
    torch.manual_seed(0)
    encoder = lambda vocab_size: RNNEncoder(  # noqa: E731
        vocab_size, cell=cell, embedding_dim=src_embedding, hidden_size=H, num_layers=layers,
        bidirectional=bidirectional, dropout=0.0, residual=False, implementation="torch",
        word_dropout=0.0)
    decoder = lambda vocab_size, context_size, attention: RNNDecoder(  # noqa: E731
        vocab_size, context_size, attention=attention, cell=cell, embedding_dim=E, hidden_size=5,
        num_layers=layers, dropout=0.0, input_feeding=input_feeding, bridge=True,
        tie_embeddings=tie, residual=False, implementation="torch", word_dropout=0.0,
        output_vocabulary=output_vocabulary)
    return EncoderDecoder(encoder, decoder, src_vocab, V, attention=attention,
                          share_embeddings=share).eval()


def grads_by_name(model: torch.nn.Module) -> dict:
    """A copy of every parameter's gradient (those that have one), by name."""
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def logits_loss(logits: torch.Tensor, targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    """The reference loss: label-smoothed cross-entropy of full logits [B, T, V], summed over the
    non-padding targets [B, T]."""
    real = targets != PAD
    return smoothed_cross_entropy(logits[real], targets[real], smoothing)


def assert_same_grads(ours: dict, theirs: dict, **tolerance) -> None:
    assert ours.keys() == theirs.keys() and ours
    for name, grad in ours.items():
        torch.testing.assert_close(grad, theirs[name], msg=name, **tolerance)


@pytest.mark.parametrize("cell,bidirectional,layers",
                         list(itertools.product(["rnn", "gru", "lstm"], [False, True], [1, 2])))
def test_encoder_shapes(cell, bidirectional, layers):
    encoder = RNNEncoder(V, cell=cell, embedding_dim=E, hidden_size=H, num_layers=layers,
                         bidirectional=bidirectional, dropout=0.1, residual=False,
                         implementation="torch", word_dropout=0.0)
    src = torch.tensor([[4, 5, 6, 7, 3], [8, 9, 3, PAD, PAD]])
    out = encoder(src, torch.tensor([5, 3]))
    dirs = 2 if bidirectional else 1
    assert out.states.shape == (2, 5, H * dirs)
    assert out.final.shape == (layers, 2, H * dirs)
    assert encoder.output_size == H * dirs
    assert out.mask.tolist() == [[True] * 5, [True] * 3 + [False] * 2]


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_does_not_change_encoding(cell, bidirectional):
    encoder = RNNEncoder(V, cell=cell, embedding_dim=E, hidden_size=H, num_layers=2,
                         bidirectional=bidirectional, dropout=0.0, residual=False,
                         implementation="torch", word_dropout=0.0).eval()
    alone = encoder(torch.tensor([[8, 9, 3]]), torch.tensor([3]))
    padded = encoder(torch.tensor([[4, 5, 6, 7, 3], [8, 9, 3, PAD, PAD]]), torch.tensor([5, 3]))
    torch.testing.assert_close(padded.states[1, :3], alone.states[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(padded.final[:, 1], alone.final[:, 0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attention", ["none", "bahdanau", "luong"])
@pytest.mark.parametrize("input_feeding", [False, True])
def test_padding_does_not_change_decoder_logits(attention, input_feeding):
    model = tiny_model(attention=attention, input_feeding=input_feeding)
    tgt_in = torch.tensor([[2, 5, 6], [2, 7, 8]])
    alone = model(torch.tensor([[8, 9, 3]]), torch.tensor([3]), tgt_in[1:]).logits
    padded = model(torch.tensor([[4, 5, 6, 7, 3], [8, 9, 3, PAD, PAD]]), torch.tensor([5, 3]),
                   tgt_in).logits
    torch.testing.assert_close(padded[1], alone[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [BahdanauAttention, LuongAttention])
def test_attention_weights_sum_to_one_and_skip_padding(cls):
    torch.manual_seed(1)
    attention = cls(query_size=H, key_size=2 * H, hidden_size=H)
    states = torch.randn(2, 5, 2 * H)
    mask = torch.tensor([[True] * 5, [True] * 2 + [False] * 3])
    context, weights = attention(torch.randn(2, 4, H), attention.project_keys(states), states, mask)
    assert weights.shape == (2, 4, 5) and context.shape == (2, 4, 2 * H)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4))
    assert torch.all(weights[1, :, 2:] == 0)
    assert torch.all(weights[1, :, :2] > 0)


@pytest.mark.parametrize("cell,layers,attention,input_feeding", [
    ("gru", 1, "bahdanau", False),   # one RNN call over the whole target
    ("gru", 1, "bahdanau", True),    # input feeding: embeddings projected for all steps at once
    ("lstm", 2, "luong", True),
    ("rnn", 1, "none", True),        # ... with the encoder summary as a third input part
])
def test_teacher_forced_unroll_equals_step_by_step(cell, layers, attention, input_feeding):
    """The teacher-forced unroll gives the logits and the gradients of stepping one token at a
    time (``decoder.step``, the path search uses)."""
    model = tiny_model(cell=cell, layers=layers, attention=attention, input_feeding=input_feeding)
    src, src_len = torch.tensor([[4, 5, 6, 3], [8, 9, 3, PAD]]), torch.tensor([4, 3])
    tgt_in = torch.tensor([[2, 7, 8, 9], [2, 5, 6, 7]])
    weights = torch.randn(2, 4, V)

    def logits_and_grads(unrolled: bool):
        model.zero_grad()
        if unrolled:
            logits = model(src, src_len, tgt_in).logits
        else:
            memory, state = model.encode(src, src_len)
            steps = []
            for t in range(tgt_in.size(1)):
                out = model.decoder.step(tgt_in[:, t], state, memory)
                steps.append(out.logits)
                state = out.state
            logits = torch.stack(steps, 1)
        (logits * weights).sum().backward()
        return logits.detach(), grads_by_name(model)

    fused, fused_grads = logits_and_grads(True)
    stepped, stepped_grads = logits_and_grads(False)
    torch.testing.assert_close(fused, stepped, rtol=1e-5, atol=1e-6)
    assert_same_grads(fused_grads, stepped_grads, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("input_feeding,ratio", [(False, 1.0), (True, 1.0), (False, 0.5)])
def test_output_mask_keeps_only_the_masked_positions(input_feeding, ratio):
    model = tiny_model(input_feeding=input_feeding)
    src, src_len = torch.tensor([[4, 5, 6, 3], [8, 9, 3, PAD]]), torch.tensor([4, 3])
    tgt_in = torch.tensor([[2, 7, 8, 9], [2, 5, PAD, PAD]])
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    torch.manual_seed(1)
    full = model(src, src_len, tgt_in, ratio).logits
    torch.manual_seed(1)  # the same sampling decisions under scheduled sampling
    kept = model(src, src_len, tgt_in, ratio, output_mask=mask).logits
    assert kept.shape == (6, V)
    torch.testing.assert_close(kept, full[mask])


@pytest.mark.parametrize("input_feeding,ratio,restricted",
                         [(False, 1.0, False), (True, 1.0, True), (False, 0.5, True)])
def test_output_loss_of_the_readouts_is_the_loss_of_the_logits(input_feeding, ratio, restricted):
    """``project=False`` + ``output_loss`` (the training path) gives the logits' loss and the
    same gradient for every parameter."""
    model = tiny_model(input_feeding=input_feeding, tie=True).train()
    if restricted:
        model.decoder.restrict_output(torch.tensor([5, 7, 8, 9]))
    src, src_len = torch.tensor([[4, 5, 6, 3], [8, 9, 3, PAD]]), torch.tensor([4, 3])
    tgt_in = torch.tensor([[2, 7, 8, 9], [2, 5, PAD, PAD]])
    tgt_out = torch.tensor([[7, 8, 9, 3], [5, 3, PAD, PAD]])
    mask = tgt_out != PAD

    def loss_and_grads(project):
        model.zero_grad()
        torch.manual_seed(1)  # the same sampling decisions under scheduled sampling
        out = model(src, src_len, tgt_in, ratio, output_mask=mask, project=project)
        if project:
            assert out.readout is None
            loss = smoothed_cross_entropy(out.logits, model.decoder.output_layer.columns(tgt_out)[mask], 0.1)
        else:
            assert out.logits is None and out.readout.shape == (6, model.decoder.readout_size)
            loss = model.decoder.output_loss(out.readout, tgt_out[mask], 0.1)
        loss.backward()
        return loss.detach(), grads_by_name(model)

    logits_loss, logits_grads = loss_and_grads(True)
    readout_loss, readout_grads = loss_and_grads(False)
    torch.testing.assert_close(readout_loss, logits_loss)
    assert_same_grads(readout_grads, logits_grads)


@pytest.mark.parametrize("input_feeding", [False, True])
def test_teacher_forcing_ratio_one_feeds_the_reference(input_feeding):
    model = tiny_model(input_feeding=input_feeding)
    src, src_len = torch.tensor([[4, 5, 6, 3]]), torch.tensor([4])
    a = model(src, src_len, torch.tensor([[2, 7, 8, 9]]), 1.0).logits
    b = model(src, src_len, torch.tensor([[2, 7, 5, 9]]), 1.0).logits
    torch.testing.assert_close(a[:, :2], b[:, :2])   # same inputs up to step 1
    assert not torch.allclose(a[:, 2], b[:, 2])      # step 2 reads the changed reference


@pytest.mark.parametrize("input_feeding", [False, True])
def test_teacher_forcing_ratio_zero_feeds_own_predictions(input_feeding):
    model = tiny_model(input_feeding=input_feeding)
    src, src_len = torch.tensor([[4, 5, 6, 3]]), torch.tensor([4])
    a = model(src, src_len, torch.tensor([[2, 7, 8, 9]]), 0.0).logits
    b = model(src, src_len, torch.tensor([[2, 10, 5, 4]]), 0.0).logits
    torch.testing.assert_close(a, b)  # only BOS is read from the reference
    # ... and what is read instead is the argmax of the previous step, as greedy decoding does.
    memory, state = model.encode(src, src_len)
    prev = torch.tensor([2])
    for t in range(4):
        out = model.decoder.step(prev, state, memory)
        torch.testing.assert_close(out.logits, a[:, t])
        prev, state = out.logits.argmax(-1), out.state


def test_tied_embeddings_share_the_weight():
    model = tiny_model(tie=True)
    assert model.decoder.output_layer.weight is model.decoder.embedding.weight


def test_shared_embeddings_are_one_matrix_for_all_three_roles():
    model = tiny_model(tie=True, share=True).train()
    shared = model.decoder.embedding.weight
    assert model.encoder.embedding.weight is shared and model.decoder.output_layer.weight is shared
    assert sum(p is shared for p in model.parameters()) == 1  # the optimizer sees it once
    src, src_len = torch.tensor([[4, 5, 6, 3], [7, 3, 0, 0]]), torch.tensor([4, 2])
    model(src, src_len, torch.tensor([[2, 8], [2, 9]])).logits.sum().backward()
    # The gradient gathers all three uses: rows only the source reads (4, 5, 6) get one too.
    assert shared.grad[[4, 5, 6]].abs().sum() > 0
    restored = tiny_model(tie=True, share=True)
    restored.load_state_dict(model.state_dict())
    assert restored.encoder.embedding.weight is restored.decoder.embedding.weight
    torch.testing.assert_close(restored.encoder.embedding.weight, shared.detach())


@pytest.mark.parametrize("kwargs,match", [
    ({"src_vocab": V + 1}, "one vocabulary for both sides.*12 source and 11 target"),
    ({"src_embedding": E + 2}, "model.encoder.embedding_dim == model.decoder.embedding_dim")])
def test_shared_embeddings_need_one_vocabulary_and_size(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        tiny_model(share=True, **kwargs)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_every_cell_trains(cell):
    model = tiny_model(cell=cell, layers=2).train()
    src, src_len = torch.tensor([[4, 5, 6, 3], [7, 3, 0, 0]]), torch.tensor([4, 2])
    logits = model(src, src_len, torch.tensor([[2, 7, 8], [2, 9, 0]])).logits
    assert logits.shape == (2, 3, V)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.encoder.parameters())


@pytest.mark.parametrize("option,value,match", [
    ("cell", "transformer", "model.encoder.cell"), ("dropout", -0.1, "model.encoder.dropout"),
    ("num_layers", 0, "model.encoder.num_layers")])
def test_bad_encoder_options_name_the_option(option, value, match):
    kwargs = {"vocab_size": V, "cell": "gru", "embedding_dim": 256, "hidden_size": 256,
              "num_layers": 1, "bidirectional": True, "dropout": 0.1, "residual": False,
              "implementation": "torch", "word_dropout": 0.0, option: value}
    with pytest.raises(ConfigError, match=match):
        RNNEncoder(**kwargs)


def test_unknown_attention_names_the_option():
    with pytest.raises(ConfigError, match="model.attention='dot-product'"):
        RNNDecoder(V, 6, attention="dot-product", cell="gru", embedding_dim=256, hidden_size=512,
                   num_layers=1, dropout=0.2, input_feeding=False, bridge=True,
                   tie_embeddings=False, residual=False, implementation="torch",
                   word_dropout=0.0, output_vocabulary="all")


@pytest.mark.parametrize("tie,input_feeding", [(True, True), (False, False)])
def test_a_restricted_output_layer_scores_the_kept_ids_only(tie, input_feeding):
    """``restrict_output``: the teacher-forced logits are the full layer's columns of the kept ids
    (the specials always kept), ``output_layer.columns`` maps targets onto those columns, and a
    decoding step gives -inf to every id left out and the full layer's scores to the rest."""
    model = tiny_model(tie=tie, input_feeding=input_feeding)
    src, src_len = torch.tensor([[4, 5, 6, 3], [8, 9, 3, PAD]]), torch.tensor([4, 3])
    tgt_in = torch.tensor([[2, 7, 8, 9], [2, 5, 6, PAD]])
    full = model(src, src_len, tgt_in).logits
    memory, state = model.encode(src, src_len)
    full_step = model.decoder.step(tgt_in[:, 0], state, memory).logits
    kept = torch.tensor([0, 1, 2, 3, 5, 7, 9])
    model.decoder.restrict_output(torch.tensor([9, 5, 7, 7]))
    assert model.decoder.output_ids.tolist() == kept.tolist()
    torch.testing.assert_close(model(src, src_len, tgt_in).logits, full[..., kept])
    targets = torch.tensor([[7, 9, 3, PAD], [5, 6, 3, PAD]])  # 6 was never kept: scored as UNK
    assert model.decoder.output_layer.columns(targets).tolist() == [[5, 6, 3, PAD], [4, 1, 3, PAD]]
    step = model.decoder.step(tgt_in[:, 0], state, memory).logits
    assert step.shape == (2, V)
    torch.testing.assert_close(step[:, kept], full_step[:, kept])
    left_out = torch.tensor([4, 6, 8, 10])
    assert torch.isneginf(step[:, left_out]).all()


def test_a_restricted_tied_output_layer_trains_the_kept_embedding_rows_only():
    model = tiny_model(tie=True).train()
    model.decoder.restrict_output(torch.tensor([5, 7, 9]))
    src, src_len = torch.tensor([[4, 5, 6, 3]]), torch.tensor([4])
    model(src, src_len, torch.tensor([[2, 7, 5, 9]])).logits.logsumexp(-1).sum().backward()
    grad_rows = model.decoder.embedding.weight.grad.abs().sum(-1) > 0
    # rows 2, 7, 5, 9 are read as inputs; the output layer adds the kept ids (0-3, 5, 7, 9)
    assert grad_rows.nonzero().flatten().tolist() == [0, 1, 2, 3, 5, 7, 9]


def test_a_restricted_output_layer_loads_only_the_same_kept_ids():
    """The column map is built from the model's own ids: a state with other ids (even as many)
    would give every column another meaning, so loading it is refused, naming the buffer."""
    trained = tiny_model()
    trained.decoder.restrict_output(torch.tensor([5, 7, 9]))
    same, other, more = tiny_model(), tiny_model(), tiny_model()
    same.decoder.restrict_output(torch.tensor([9, 7, 5]))
    other.decoder.restrict_output(torch.tensor([5, 7, 8]))
    more.decoder.restrict_output(torch.tensor([5, 7, 8, 9]))
    same.load_state_dict(trained.state_dict())
    torch.testing.assert_close(same.decoder.output_layer.weight, trained.decoder.output_layer.weight)
    with pytest.raises(RuntimeError, match="decoder.output_layer.output_ids: the saved output layer "
                                           "scores 7 target ids, this model 7 other ones"):
        other.load_state_dict(trained.state_dict())
    with pytest.raises(RuntimeError, match="scores 7 target ids, this model 8 \\("):
        more.load_state_dict(trained.state_dict())


def test_an_unrestricted_output_layer_takes_the_saved_kept_ids_as_it_loads():
    """A model built from a checkpoint's config (output_vocabulary=training_targets) learns
    which ids its output layer keeps from the state it loads; a model that scores every id
    (output_vocabulary=all, e.g. a resumed run with the setting changed) refuses such a state."""
    trained = tiny_model()
    trained.decoder.restrict_output(torch.tensor([5, 7, 9]))
    with pytest.raises(RuntimeError, match="output_ids: the saved output layer scores the "
                                           "training targets' ids only, this model every id"):
        tiny_model().load_state_dict(trained.state_dict())
    fresh = tiny_model(output_vocabulary="training_targets")
    fresh.load_state_dict(trained.state_dict())
    assert fresh.decoder.output_ids.tolist() == [0, 1, 2, 3, 5, 7, 9]
    targets = torch.tensor([7, 6, PAD])  # 6 was never kept: UNK's column
    assert fresh.decoder.output_layer.columns(targets).tolist() == [5, 1, PAD]
    smaller = OutputLayer(fresh.decoder.readout_size, 6)  # ids 7 and 9 lie beyond its 6 pieces
    with pytest.raises(RuntimeError, match="(?s)Unexpected key.*output_ids.*size mismatch for weight"):
        smaller.load_state_dict(trained.decoder.output_layer.state_dict())


@pytest.mark.parametrize("restricted", [False, True])
def test_a_state_dict_of_the_old_key_layout_loads_and_gives_the_same_logits(restricted):
    """Checkpoints saved while the output layer was an ``nn.Linear`` of the decoder hold
    ``decoder.output_layer.weight`` and, restricted, ``decoder.output_ids``."""
    trained = tiny_model(input_feeding=True)
    if restricted:
        trained.decoder.restrict_output(torch.tensor([9, 5, 7]))
    old_layout = {("decoder.output_ids" if name == "decoder.output_layer.output_ids" else name): value
                  for name, value in trained.state_dict().items()}
    assert ("decoder.output_ids" in old_layout) == restricted
    assert "decoder.output_layer.weight" in old_layout
    torch.manual_seed(5)
    loaded = tiny_model(input_feeding=True,
                        output_vocabulary="training_targets" if restricted else "all")
    for p in loaded.parameters():  # other weights than the trained ones until loaded
        torch.nn.init.normal_(p)
    loaded.load_state_dict(old_layout)
    assert loaded.state_dict().keys() == trained.state_dict().keys()
    src, src_len = torch.tensor([[4, 5, 6, 3], [8, 9, 3, PAD]]), torch.tensor([4, 3])
    tgt_in = torch.tensor([[2, 7, 8, 9], [2, 5, 6, PAD]])
    assert torch.equal(loaded(src, src_len, tgt_in).logits, trained(src, src_len, tgt_in).logits)
    memory, state = loaded.encode(src, src_len)
    expected_memory, expected_state = trained.encode(src, src_len)
    with torch.no_grad():
        step = loaded.decoder.step(tgt_in[:, 0], state, memory, all_ids=False).logits
        expected = trained.decoder.step(tgt_in[:, 0], expected_state, expected_memory, all_ids=False)
    assert torch.equal(step, expected.logits)
    if restricted:  # and a model restricted to other ids still refuses it
        other = tiny_model(input_feeding=True)
        other.decoder.restrict_output(torch.tensor([5, 7, 8]))
        with pytest.raises(RuntimeError, match="output_ids: the saved output layer scores 7"):
            other.load_state_dict(old_layout)


def test_a_restricted_output_needs_ids_of_the_vocabulary_and_a_known_setting():
    with pytest.raises(ValueError, match=r"output ids must lie in \[0, 11\)"):
        tiny_model().decoder.restrict_output(torch.tensor([3, 11]))
    with pytest.raises(ConfigError, match="model.decoder.output_vocabulary='seen'"):
        RNNDecoder(V, 6, attention="bahdanau", cell="gru", embedding_dim=256, hidden_size=512,
                   num_layers=1, dropout=0.2, input_feeding=False, bridge=True,
                   tie_embeddings=False, residual=False, implementation="torch",
                   word_dropout=0.0, output_vocabulary="seen")


def test_the_validation_loss_is_the_loss_per_token_of_all_pairs_whatever_the_batches():
    from seq2seq.data.batching import make_batch
    from seq2seq.topologies.translate import TranslationObjective, ValidationData
    from tests.conftest import group_settings
    model = tiny_model(input_feeding=True)
    generator = torch.Generator().manual_seed(3)
    lengths = torch.randint(1, 9, (150, 2), generator=generator).tolist()
    src = [torch.randint(4, V, (n,), generator=generator).tolist() for n, _ in lengths]
    tgt = [torch.randint(4, V, (m,), generator=generator).tolist() for _, m in lengths]
    objective = TranslationObjective(None, ValidationData(src, tgt, []),
                                     group_settings("search", "beam"))
    loss, ppl = objective.validation_loss(model)
    whole = make_batch(src, tgt, range(len(src)))  # one batch, in the given order
    with torch.no_grad():
        logits = model(whole.src, whole.src_len, whole.tgt_in).logits
        expected = float(logits_loss(logits, whole.tgt_out, 0.0)) / int((whole.tgt_out != PAD).sum())
    assert loss == pytest.approx(expected, rel=1e-5)
    assert ppl == pytest.approx(math.exp(expected), rel=1e-5)


@pytest.mark.parametrize("cell,input_feeding,teacher_forcing",
                         [("gru", False, 1.0), ("lstm", True, 1.0), ("gru", False, 0.5)])
def test_the_generation_loss_is_the_logits_loss_without_the_logits(cell, input_feeding,
                                                                   teacher_forcing):
    # 1 vs N trains through decoder.output_loss (readouts of the real positions only), which must
    # give the label-smoothed loss of the full logits, and the same gradient to every parameter.
    from seq2seq.models.generator import ConditionedGenerator
    from seq2seq.topologies.generate.batches import make_generation_batch
    from seq2seq.topologies.generate.objective import generation_loss
    torch.manual_seed(0)
    decoder = lambda vocab_size, context_size, attention: RNNDecoder(  # noqa: E731
        vocab_size, context_size, attention=attention, cell=cell, embedding_dim=E, hidden_size=5,
        num_layers=1, dropout=0.0, input_feeding=input_feeding, bridge=True,
        tie_embeddings=True, residual=False, implementation="torch", word_dropout=0.0,
        output_vocabulary="all")
    model = ConditionedGenerator(decoder, num_conditions=3, tgt_vocab_size=V, condition_dim=6)
    batch = make_generation_batch([0, 2, 1], [[4, 5, 6, 7], [8, 9], [10, 4, 5]], [0, 1, 2])

    def gradients(loss_of):
        model.zero_grad()
        torch.manual_seed(7)  # scheduled sampling draws the same coins on both paths
        loss = loss_of()
        loss.backward()
        return loss.detach(), grads_by_name(model)

    def loss_of_the_logits():
        logits = model(batch.conditions, batch.tgt_in, teacher_forcing).logits
        return logits_loss(logits, batch.tgt_out, 0.1)

    calls = []
    fused_loss = model.decoder.output_loss
    model.decoder.output_loss = lambda *args: calls.append(args[0].shape) or fused_loss(*args)
    fused, fused_grads = gradients(lambda: generation_loss(model, batch, teacher_forcing, 0.1))
    assert calls == [(12, E)]  # the readouts (tied: E wide) of the 12 real targets, not logits
    expected, expected_grads = gradients(loss_of_the_logits)
    assert fused.item() == pytest.approx(expected.item(), rel=1e-5)
    assert_same_grads(fused_grads, expected_grads, rtol=1e-4, atol=1e-6)
