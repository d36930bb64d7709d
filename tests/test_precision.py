"""trainer.precision and search.precision: bf16 under CPU autocast, fp32 weights and scores, and
``auto`` choosing by a timed matmul."""

import pytest
import torch

from seq2seq import precision as precision_module
from seq2seq.data.batching import make_batch
from seq2seq.errors import ConfigError
from seq2seq.precision import autocast, check_precision, resolve_precision
from seq2seq.search import decode
from seq2seq.topologies.translate import TranslationObjective, ValidationData
from seq2seq.training.trainer import Trainer
from tests.conftest import group_settings
from tests.test_models import tiny_model


def test_an_unknown_precision_names_the_option():
    with pytest.raises(ConfigError, match=r"trainer.precision='fp8': expected one of fp32, bf16, fp16, auto"):
        group_settings("trainer", "default", precision="fp8")
    with pytest.raises(ConfigError, match="search.precision"):
        group_settings("search", "beam", precision="half")
    check_precision("x", "auto")  # accepted


@pytest.mark.parametrize("speedup, chosen", [(2.6, "bf16"), (1.1, "fp32"), (0.7, "fp32")])
def test_auto_takes_bf16_only_when_its_matmul_is_clearly_faster(monkeypatch, speedup, chosen):
    monkeypatch.setattr(precision_module, "bf16_matmul_speedup", lambda: speedup)
    precision_module.auto_precision.cache_clear()
    try:
        assert resolve_precision("auto") == chosen
        assert resolve_precision("auto") == chosen  # decided once per process
    finally:
        precision_module.auto_precision.cache_clear()
    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16") == "bf16"
    with pytest.raises(ConfigError, match="search.precision='fp8'"):
        resolve_precision("fp8", "search.precision")


def test_the_matmul_probe_measures_a_positive_ratio():
    assert precision_module.bf16_matmul_speedup(rows=64, inner=32, cols=64, repeats=1) > 0


def test_autocast_needs_a_resolved_precision():
    with pytest.raises(ValueError, match="resolve"):
        autocast("auto")
    with autocast("bf16"):
        assert (torch.ones(2, 3) @ torch.ones(3, 2)).dtype == torch.bfloat16
    with autocast("fp32"):
        assert (torch.ones(2, 3) @ torch.ones(3, 2)).dtype == torch.float32


def batch():
    return make_batch([[4, 5, 6, 7], [8, 9]], [[10, 4, 5], [6, 7, 8, 9]], [0, 1])  # ids < V = 11


def model_and_objective() -> tuple[torch.nn.Module, TranslationObjective]:
    model = tiny_model(input_feeding=True).train()  # seeded, no dropout: the same every call
    return model, TranslationObjective(None, ValidationData([], [], []),
                                       group_settings("search", "beam"))


def one_update(precision: str, tmp_path) -> tuple[float, torch.nn.Module]:
    model, objective = model_and_objective()
    trainer = Trainer(group_settings("trainer", "default", lr=1e-2, precision=precision), model,
                      objective, tmp_path, {})
    loss, tokens, _ = trainer.train_step([batch()])
    return loss, model


def test_the_trainer_runs_the_forward_pass_in_bf16_and_keeps_fp32_weights(tmp_path):
    loss_fp32, _ = one_update("fp32", tmp_path / "a")
    loss_bf16, model = one_update("bf16", tmp_path / "b")
    assert loss_bf16 == pytest.approx(loss_fp32, rel=2e-2)
    assert loss_bf16 != loss_fp32  # the forward pass did run in bf16
    assert all(p.dtype == torch.float32 for p in model.parameters())


def gradients(precision: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model, objective = model_and_objective()
    with autocast(precision):
        loss = objective.loss(model, batch(), 1.0, 0.1)
    loss.backward()
    return loss, {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


def test_bf16_gradients_point_where_the_fp32_ones_do():
    loss_fp32, exact = gradients("fp32")
    loss_bf16, low = gradients("bf16")
    assert loss_bf16.dtype == torch.float32  # summed in fp32 (cross_entropy.py)
    assert low.keys() == exact.keys() and len(exact) > 10
    for name, grad in exact.items():
        assert low[name].dtype == torch.float32, name
        cosine = torch.nn.functional.cosine_similarity(low[name].flatten(), grad.flatten(), dim=0)
        assert cosine > 0.99, (name, float(cosine))
    assert any(not torch.equal(low[name], exact[name]) for name in exact)


def test_bf16_decoding_gives_fp32_scores_and_attention_close_to_fp32():
    model = tiny_model()
    src, src_len = torch.tensor([[4, 5, 6, 3], [7, 8, 3, 0]]), torch.tensor([4, 3])
    for beam in (1, 3):
        exact = decode(model, src, src_len, beam=beam, max_length=8, return_attention=True)
        low = decode(model, src, src_len, beam=beam, max_length=8, return_attention=True,
                     precision="bf16")
        assert [h.tokens for h in low] == [h.tokens for h in exact]
        assert [h.score for h in low] == pytest.approx([h.score for h in exact], abs=0.05)
        assert [h.score for h in low] != [h.score for h in exact]  # bf16 did run
        for hyp in low:
            assert hyp.attention.dtype == torch.float32
            assert hyp.attention.shape == (len(hyp.tokens) + 1, src.size(1))


@pytest.mark.slow
def test_a_bf16_translation_run_end_to_end(tmp_path):
    import json

    from seq2seq.pipeline import run_training
    from tests.conftest import compose_train
    from tests.test_smoke import tiny_overrides

    cfg = compose_train(tiny_overrides(tmp_path) + [
        "trainer.max_steps=12", "trainer.lr=0.01", "trainer.precision=bf16",
        "search.precision=auto"])
    run_training(cfg, tmp_path / "run")
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["num_sentences"] == 12 and report["bleu"] >= 0
    assert report["train_precision"] == "bf16"
    assert report["decode_precision"] in ("fp32", "bf16")  # auto: whichever is faster here
