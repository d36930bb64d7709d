"""The label-smoothed cross-entropy with its own backward, and the output layer fused with it in
row chunks, agree with torch's."""

import pytest
import torch
import torch.nn.functional as F

from seq2seq.models.cross_entropy import linear_cross_entropy, smoothed_cross_entropy


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


def separate_and_fused(smoothing: float, scale: float, chunk_rows: int, dtype=torch.double,
                       autocast: bool = False):
    """(loss, grad of hidden, grad of weight) of F.linear + F.cross_entropy and of
    linear_cross_entropy on the same 13 rows over 7 classes."""
    torch.manual_seed(0)
    hidden = torch.randn(13, 5, dtype=dtype, requires_grad=True)
    weight = torch.randn(7, 5, dtype=dtype, requires_grad=True)
    targets = torch.randint(0, 7, (13,))
    results = []
    for fused in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            if fused:
                loss = linear_cross_entropy(hidden, weight, targets, smoothing, chunk_rows)
            else:
                loss = smoothed_cross_entropy(F.linear(hidden, weight), targets, smoothing)
        (scale * loss).backward()
        results.append((loss.detach(), hidden.grad, weight.grad))
        hidden.grad = weight.grad = None
    return results


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("scale", [1.0, 0.25])
@pytest.mark.parametrize("chunk_rows", [1, 4, 13, 100])  # 4: a last chunk of 1 row
def test_the_fused_output_layer_matches_the_separate_one(smoothing, scale, chunk_rows):
    separate, fused = separate_and_fused(smoothing, scale, chunk_rows)
    for theirs, ours, name in zip(separate, fused, ("loss", "hidden grad", "weight grad")):
        torch.testing.assert_close(ours, theirs, msg=name)


def test_the_fused_output_layer_under_bf16_autocast_stays_close_and_returns_fp32():
    # As through F.linear under autocast, the products run in bf16; the loss and gradients come
    # back in fp32, within bf16's rounding of the separate path's.
    separate, fused = separate_and_fused(0.1, 1.0, 4, dtype=torch.float32, autocast=True)
    assert [t.dtype for t in fused] == [torch.float32] * 3
    for theirs, ours, name in zip(separate, fused, ("loss", "hidden grad", "weight grad")):
        torch.testing.assert_close(ours, theirs, rtol=2e-2, atol=2e-2, msg=name)


def test_the_fused_output_layer_without_gradients_builds_no_graph():
    torch.manual_seed(0)
    hidden, weight = torch.randn(6, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    targets = torch.tensor([0, 1, 2, 3, 0, 1])
    expected = smoothed_cross_entropy(F.linear(hidden, weight), targets, 0.1)
    with torch.inference_mode():
        loss = linear_cross_entropy(hidden, weight, targets, 0.1, chunk_rows=4)
    assert loss.grad_fn is None
    torch.testing.assert_close(loss, expected.detach())


@pytest.mark.parametrize("shapes,chunk_rows,match", [
    (((2, 3), (4, 2), (2,)), 8, "expected hidden"),
    (((2, 3), (4, 3), (3,)), 8, "expected hidden"),
    (((2, 3), (4, 3), (2,)), 0, "chunk_rows"),
])
def test_the_fused_output_layer_checks_its_shapes(shapes, chunk_rows, match):
    hidden, weight, targets = torch.randn(*shapes[0]), torch.randn(*shapes[1]), torch.zeros(
        shapes[2], dtype=torch.long)
    with pytest.raises(ValueError, match=match):
        linear_cross_entropy(hidden, weight, targets, chunk_rows=chunk_rows)
