"""The console scripts: ``--version`` on every tool, and the packaging they rely on."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from setuptools import find_namespace_packages

from seq2seq import __version__
from seq2seq.config import config_dir

ROOT = Path(__file__).resolve().parents[1]

# the modules in seq2seq.cli of the argparse console scripts (pyproject [project.scripts])
ARGPARSE_TOOLS = [
    "translate", "evaluate", "compare", "average", "recase", "search_sweep", "release", "export", "serve",
]


@pytest.mark.parametrize("tool", ARGPARSE_TOOLS)
def test_each_tool_prints_the_version_and_exits_0(tool: str, capsys: pytest.CaptureFixture[str]) -> None:
    main = importlib.import_module(f"seq2seq.cli.{tool}").main
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"seq2seq {__version__}\n"


def test_train_answers_version_before_hydra(capsys: pytest.CaptureFixture[str]) -> None:
    from seq2seq.cli.train import main

    main(["--version"])  # returns: the console script's exit status is 0
    assert capsys.readouterr().out == f"seq2seq {__version__}\n"


def test_version_is_0_2_0() -> None:
    assert __version__ == "0.2.0"


def test_train_finds_its_configs() -> None:
    assert (config_dir() / "train.yaml").is_file()


def test_pyproject_lists_every_package_and_ships_the_configs() -> None:
    # pyproject lists the packages (find cannot add conf/ as seq2seq.conf): a new folder under
    # seq2seq/ must be listed there too, or a wheel would go without it.
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = find_namespace_packages(where=str(ROOT), include=["seq2seq", "seq2seq.*"])
    assert sorted(setuptools["packages"]) == sorted([*found, "seq2seq.conf"])
    assert setuptools["package-dir"] == {"seq2seq.conf": "conf"}
    assert setuptools["package-data"]["seq2seq.conf"] == ["**/*.yaml"]
