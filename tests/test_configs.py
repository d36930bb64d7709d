"""Every option of every config group composes, and what it describes builds and runs; bad values
are ConfigErrors naming the option. What a recipe's values are is BENCHMARKS.md's business."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue
from torch import nn

import seq2seq.translate as translate_module
from seq2seq.config import build
from seq2seq.data.labelled import WordPieces, make_labelled_batch
from seq2seq.errors import ConfigError
from seq2seq.precision import resolve_precision
from seq2seq.tokenization import PAD
from seq2seq.translate import Translator
from seq2seq.translate import build_translation_model as build_model
from tests.conftest import CONF, compose_train, group_settings

GROUPS = ["topology", "data", "tokenizer", "model", "model/encoder", "model/decoder", "trainer",
          "search", "paths", "experiment"]
# _base.yaml: the keys a group's options share (some left ???), not an option of its own
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONF / group).glob("*.yaml"))
           if not path.stem.startswith("_")]
SRC_VOCAB, TGT_VOCAB, LABELS, TAGS = 37, 41, 5, 9


def forward_pass(cfg) -> torch.Tensor:
    """The model of ``cfg`` built for tiny vocabularies and run on a batch of two; its output."""
    target = cfg.model._target_
    src = torch.tensor([[5, 6, 7, 8, 3], [9, 10, 3, PAD, PAD]])
    src_len = torch.tensor([5, 3])
    if target.endswith("SequenceClassifier"):
        return build(cfg.model, src_vocab_size=SRC_VOCAB, num_labels=LABELS)(src, src_len)
    if target.endswith("SequenceTagger"):
        model = build(cfg.model, src_vocab_size=SRC_VOCAB, num_tags=TAGS, num_labels=LABELS,
                      num_lexicon=4, num_words=6)
        pieces = [WordPieces([5, 6, 7, 8], [0, 2, 3], [b"ab", b"c", b"d"], [[1], [2, 3], []],
                             [4, 5, 1]),
                  WordPieces([9, 10], [0], [b"ef"], [[4]], [5])]
        batch = make_labelled_batch(pieces, None, None, [0, 1])
        return model(batch.src, batch.src_len, batch.word_starts, batch.word_ends,
                     batch.word_bytes, batch.word_lexicon, batch.word_ids).tag_logits
    tgt_in = torch.randint(4, TGT_VOCAB, (2, 4))
    if target.endswith("ConditionedGenerator"):
        model = build(cfg.model, num_conditions=LABELS, tgt_vocab_size=TGT_VOCAB)
        return model(torch.tensor([0, 3]), tgt_in).logits
    return build_model(cfg.model, SRC_VOCAB, TGT_VOCAB)(src, src_len, tgt_in).logits


def build_everything(cfg) -> None:
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    for group in ("topology", "trainer", "search", "tokenizer", "data"):  # the _target_ groups
        build(cfg[group])
    assert resolve_precision(cfg.trainer.precision, "trainer.precision") in ("fp32", "bf16")
    assert resolve_precision(cfg.search.precision, "search.precision") in ("fp32", "bf16")
    out = forward_pass(cfg)
    assert out.size(0) == 2 and torch.isfinite(out).all()


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_builds_and_runs(group, option):
    cfg = compose_train([f"{group}={option}", "trainer=smoke"] if group != "trainer"
                        else [f"{group}={option}"])
    build_everything(cfg)


def test_the_default_config_builds_and_needs_no_files():
    cfg = compose_train([])
    assert cfg.data.generator is not None and not cfg.data.download  # no files, no network
    build_everything(cfg)


def test_a_group_base_is_not_an_option_of_its_own():
    for group in ("model/encoder", "model/decoder"):
        with pytest.raises(MissingMandatoryValue):
            OmegaConf.to_container(compose_train([f"{group}=_base"]).model, resolve=True,
                                   throw_on_missing=True)


def test_a_checkpoint_without_newer_search_keys_gets_the_packaged_ones(monkeypatch):
    # Written before max_length and precision existed, and naming a _target_ that must not be
    # imported: the packaged conf/search/beam.yaml fills the gaps, the stored keys win.
    stored = {"search": {"_target_": "os.system", "beam": 3, "length_penalty": 0.5,
                         "max_length_ratio": 1.5, "batch_size": 8}, "data": {"max_length": 50}}
    monkeypatch.setattr(translate_module, "model_from_checkpoint",
                        lambda payload, device=None: (nn.Linear(1, 1), None, OmegaConf.create(stored)))
    translator = Translator.from_checkpoint("old.pt", payload={"config": stored}, batch_size=None,
                                            max_length=7)
    packaged = group_settings("search", "beam")
    assert translator.search == type(packaged)(beam=3, length_penalty=0.5, max_length_ratio=1.5,
                                               max_length=7, batch_size=8,
                                               precision=packaged.precision)


@pytest.mark.parametrize("attention", ["none", "bahdanau", "luong"])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_cell_and_attention_are_keys(cell, attention):
    cfg = compose_train([f"model.encoder.cell={cell}", f"model.decoder.cell={cell}",
                         f"model.attention={attention}"])
    model = build_model(cfg.model, 37, 41)
    assert model.encoder.cell == cell and (model.decoder.attention is None) == (attention == "none")


@pytest.mark.parametrize("override,match", [
    ("model.encoder.cell=transformer", "model.encoder.cell"),
    ("model.attention=dot", "model.attention"),
    ("model.decoder.dropout=-0.5", "model.decoder.dropout"),
])
def test_bad_model_options_are_named(override, match):
    cfg = compose_train([override])
    with pytest.raises(ConfigError, match=match):
        build_model(cfg.model, 37, 41)


def test_misspelt_key_is_a_config_error_naming_it():
    cfg = compose_train(["+model.encoder.hiden_size=5"])
    with pytest.raises(ConfigError, match="hiden_size"):
        build_model(cfg.model, 37, 41)


def test_bad_search_and_tokenizer_options_are_named():
    with pytest.raises(ConfigError, match="search.beam=0"):
        build(compose_train(["search.beam=0"]).search)
    with pytest.raises(ConfigError, match="tokenizer.vocab_size=2"):
        build(compose_train(["tokenizer.vocab_size=2"]).tokenizer)
    with pytest.raises(ConfigError, match="trainer.teacher_forcing.kind"):
        build(compose_train(["trainer.teacher_forcing.kind=cosine"]).trainer)


def test_conf_tree_has_no_stray_files():
    assert all(p.suffix == ".yaml" for p in Path(CONF).rglob("*") if p.is_file())
