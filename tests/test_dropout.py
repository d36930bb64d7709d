import pytest
import torch

from seq2seq.errors import ConfigError
from seq2seq.models.decoder import RNNDecoder
from seq2seq.models.dropout import Dropout, drop_tokens, dropout, keep_mask
from seq2seq.models.encoder import RNNEncoder
from seq2seq.tokenization import BOS, EOS, PAD, UNK


def test_mask_drops_the_rounded_share_and_every_bit_slice_is_uniform():
    torch.manual_seed(0)
    mask, keep = keep_mask(torch.Size([1000, 1000]), 0.3)
    assert keep == pytest.approx(1 - 38 / 128)
    assert mask.float().mean().item() == pytest.approx(keep, abs=2e-3)
    # each of the eight bytes of a random int64 feeds one element: none may be biased
    by_byte = mask.view(-1, 8).float().mean(0)
    assert torch.allclose(by_byte, torch.full((8,), keep), atol=5e-3)


def test_output_keeps_the_expectation_and_the_gradient_follows_the_mask():
    torch.manual_seed(1)
    x = torch.ones(400, 500, requires_grad=True)
    y = dropout(x, 0.5)
    kept = y != 0
    assert y[kept].unique().tolist() == [2.0]
    assert y.mean().item() == pytest.approx(1.0, abs=1e-2)
    y.backward(torch.full_like(y, 3.0))
    assert torch.equal(x.grad, kept.float() * 6.0)


def test_same_seed_same_mask_and_eval_or_zero_is_the_identity():
    x = torch.randn(3, 7, 11)
    torch.manual_seed(5)
    a = dropout(x, 0.2)
    torch.manual_seed(5)
    assert torch.equal(a, dropout(x, 0.2))
    assert dropout(x, 0.2, training=False) is x
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    layer = Dropout(0.4).eval()
    assert layer(x) is x


def test_bad_rate_names_the_option():
    with pytest.raises(ConfigError, match="dropout"):
        Dropout(1.5)


def test_word_dropout_turns_real_tokens_into_unk_and_keeps_the_specials():
    torch.manual_seed(0)
    ids = torch.tensor([[BOS] + [7] * 998 + [EOS], [BOS] + [9] * 500 + [EOS] + [PAD] * 498])
    dropped = drop_tokens(ids, 0.25)
    assert torch.equal(dropped[:, 0], ids[:, 0]) and dropped[0, -1] == EOS and dropped[1, 501] == EOS
    assert torch.equal(dropped[1, 502:], ids[1, 502:])  # padding stays padding
    changed = dropped != ids
    assert set(dropped[changed].tolist()) == {UNK}
    assert changed[0].float().mean().item() == pytest.approx(0.25, abs=0.04)
    assert drop_tokens(ids, 0.25, training=False) is ids and drop_tokens(ids, 0.0) is ids


def test_encoder_and_decoder_word_dropout_read_unk_in_training_only():
    src = torch.tensor([[4, 5, 6, 7, 3], [8, 9, 3, PAD, PAD]])
    lengths = torch.tensor([5, 3])
    encoder = RNNEncoder(11, cell="gru", embedding_dim=4, hidden_size=3, num_layers=1,
                         bidirectional=True, dropout=0.0, residual=False, implementation="torch",
                         word_dropout=0.5)
    torch.manual_seed(3)
    expected = drop_tokens(src, 0.5)
    assert not torch.equal(expected, src)
    torch.manual_seed(3)
    torch.testing.assert_close(encoder(src, lengths).states,
                               encoder.eval()(expected, lengths).states)
    assert torch.equal(encoder(src, lengths).states, encoder(src, lengths).states)  # eval: whole
    decoder = RNNDecoder(11, 6, attention="none", cell="gru", embedding_dim=4, hidden_size=5,
                         num_layers=1, dropout=0.0, input_feeding=False, bridge=True,
                         tie_embeddings=False, residual=False, implementation="torch",
                         word_dropout=1.0, output_vocabulary="all")
    memory = decoder.memory(RNNEncoder(
        11, cell="gru", embedding_dim=4, hidden_size=3, num_layers=1, bidirectional=True,
        dropout=0.0, residual=False, implementation="torch", word_dropout=0.0)(src, lengths))
    tgt_in = torch.tensor([[BOS, 5, 6], [BOS, 7, 8]])
    all_unk = torch.tensor([[BOS, UNK, UNK], [BOS, UNK, UNK]])
    training = decoder(tgt_in, memory, decoder.init_state(memory)).logits
    reading_unk = decoder.eval()(all_unk, memory, decoder.init_state(memory)).logits
    torch.testing.assert_close(training, reading_unk)


def test_bad_word_dropout_names_the_option():
    with pytest.raises(ConfigError, match="model.encoder.word_dropout"):
        RNNEncoder(11, cell="gru", embedding_dim=256, hidden_size=256, num_layers=1,
                   bidirectional=True, dropout=0.2, residual=False, implementation="torch",
                   word_dropout=1.5)
    with pytest.raises(ConfigError, match="model.decoder.word_dropout"):
        RNNDecoder(11, 6, attention="bahdanau", cell="gru", embedding_dim=256, hidden_size=512,
                   num_layers=1, dropout=0.2, input_feeding=False, bridge=True,
                   tie_embeddings=False, residual=False, implementation="torch",
                   word_dropout=-0.1, output_vocabulary="all")
