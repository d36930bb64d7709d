import pytest
import torch

from seq2seq.errors import ConfigError
from seq2seq.models.dropout import Dropout, dropout, keep_mask


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
