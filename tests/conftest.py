"""Shared fixtures: a tiny generated corpus, the shared real corpora, config composition."""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from seq2seq.config import build
from seq2seq.data.synthetic import write_number_corpus

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def shared_data_dir() -> Path:
    """Real corpora: $SEQ2SEQ_DATA_DIR, else ../shared/data beside the checkout."""
    return Path(os.environ.get("SEQ2SEQ_DATA_DIR", ROOT.parent / "shared" / "data"))


def require_shared(corpus: str) -> Path:
    """The folder of a shared corpus; skip without it, but fail under CI (CI=true)."""
    folder = shared_data_dir() / corpus
    if not folder.is_dir():
        message = f"shared corpus {folder} not found (set SEQ2SEQ_DATA_DIR)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return folder


def compose_train(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides=overrides)


@functools.lru_cache(maxsize=None)
def _composed(group: str, option: str) -> DictConfig:
    return compose_train([f"{group}={option}"])


def group_settings(group: str, option: str, **overrides: Any) -> Any:
    """What ``conf/{group}/{option}.yaml`` builds, with ``overrides`` over its values (a nested
    key as a dict: ``teacher_forcing={"kind": "linear"}``). The option is composed into the
    training config, so its defaults list and interpolations (the tokenizer's
    ``${data.vocab_size}``, ``${paths.cache_dir}``) resolve as in a run; a misspelt key fails."""
    cfg = copy.deepcopy(_composed(group, option))  # the cached composition stays untouched
    node = group.replace("/", ".")
    for key, value in overrides.items():
        OmegaConf.update(cfg, f"{node}.{key}", value, merge=True)
    return build(OmegaConf.select(cfg, node))


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A small generated en->de corpus (train 300, valid 20, test 20)."""
    root = tmp_path_factory.mktemp("numbers")
    return write_number_corpus(root, {"train": 300, "valid": 20, "test": 20}, seed=3, max_items=2,
                               max_number=99)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")
