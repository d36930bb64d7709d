"""The label-smoothed cross-entropy with its own backward agrees with torch's."""

import pytest
import torch
import torch.nn.functional as F

from seq2seq.training.cross_entropy import smoothed_cross_entropy


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_value_and_gradient_match_torch(smoothing, scale):
    torch.manual_seed(0)
    logits = torch.randn(9, 13, dtype=torch.double, requires_grad=True)
    targets = torch.randint(0, 13, (9,))
    ours = smoothed_cross_entropy(logits, targets, smoothing)
    (scale * ours).backward()
    grad, logits.grad = logits.grad, None
    theirs = F.cross_entropy(logits, targets, reduction="sum", label_smoothing=smoothing)
    (scale * theirs).backward()
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(grad, logits.grad)


def test_a_second_backward_through_the_same_graph_fails_loudly():
    # The backward reuses its saved buffer, so it can run once; autograd's version check must
    # refuse a second pass rather than let it return a wrong gradient.
    loss = smoothed_cross_entropy(torch.randn(4, 5, requires_grad=True), torch.tensor([0, 4, 2, 2]))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_logits_are_left_untouched():
    logits = torch.randn(3, 4, requires_grad=True)
    before = logits.detach().clone()
    smoothed_cross_entropy(logits * 1.0, torch.tensor([1, 2, 3]), 0.1).backward()
    torch.testing.assert_close(logits.detach(), before)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="expected logits"):
        smoothed_cross_entropy(torch.randn(2, 3, 4), torch.tensor([1, 2]))


def test_bf16_logits_give_an_fp32_loss_and_a_bf16_gradient():
    # Under trainer.precision=bf16 the output layer hands over bf16 logits; the summed loss of a
    # batch (~15,000 here, where bf16 steps by 64) must be summed in fp32.
    torch.manual_seed(0)
    logits = (3 * torch.randn(2000, 50)).bfloat16().requires_grad_()
    targets = torch.randint(0, 50, (2000,))
    ours = smoothed_cross_entropy(logits, targets, 0.1)
    ours.backward()
    assert ours.dtype == torch.float32 and logits.grad.dtype == torch.bfloat16
    log_probs = torch.log_softmax(logits.detach(), dim=-1).double()  # as the function has them
    summed = -(0.9 * log_probs.gather(1, targets.unsqueeze(1)).sum() + 0.1 * log_probs.mean(-1).sum())
    assert float(ours.detach()) == pytest.approx(float(summed), rel=1e-6)
