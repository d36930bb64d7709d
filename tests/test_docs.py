"""The pages under docs/learn: every ```bash block runs as written (on a smoke budget), every page
is linked from the index, and every image they show exists and stays small."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

LEARN = ROOT / "docs" / "learn"
PAGES = sorted(p for p in LEARN.glob("*.md") if p.name != "README.md")
# Appended to every `python scripts/train.py` a page shows: a few steps on a small corpus, and a
# report without the slow parts. The built-in corpus gets smaller splits (other data has no
# generator to resize).
SMOKE_TRAIN = ["trainer=smoke", "trainer.progress_bar=false", "report.bootstrap_resamples=0",
               "report.html=false", "report.attention_plots=0"]
SMOKE_NUMBERS = ["data.generator.sizes.train=300", "data.generator.sizes.valid=16",
                 "data.generator.sizes.test=12", "data.vocab_size=90"]


def bash_blocks(page: Path) -> list[str]:
    """The ```bash blocks of a page, in order (plain ``` blocks are shown, not run)."""
    return re.findall(r"^```bash\n(.*?)^```", page.read_text(encoding="utf-8"), flags=re.S | re.M)


def commands(block: str) -> list[str]:
    """One command per line, continuation lines (trailing backslash) joined."""
    return [line.strip() for line in block.replace("\\\n", " ").splitlines()
            if line.strip() and not line.strip().startswith("#")]


def smoke_command(command: str) -> str:
    """The command on a smoke budget, run from a scratch folder: the repository's scripts by
    absolute path, training with SMOKE_TRAIN, the docs' own scripts with --smoke."""
    words = shlex.split(command)
    if words[:1] != ["python"] or len(words) < 2:
        raise AssertionError(f"a page command should start `python SCRIPT`: {command}")
    words[0], words[1] = sys.executable, str(ROOT / words[1])
    if words[1].endswith("scripts/train.py"):
        words += SMOKE_TRAIN + ([] if "data=snips" in words else SMOKE_NUMBERS)
    elif "/docs/learn/" in words[1]:
        words.append("--smoke")
    return shlex.join(words)


def test_commands_are_rewritten_for_the_smoke_budget():
    line = "python scripts/train.py -m 'model.decoder.cell=${model.encoder.cell}' hydra.sweep.dir=runs/x"
    smoke = shlex.split(smoke_command(line))
    assert smoke[:2] == [sys.executable, str(ROOT / "scripts" / "train.py")]
    assert "model.decoder.cell=${model.encoder.cell}" in smoke and "trainer=smoke" in smoke
    assert shlex.split(smoke_command("python docs/learn/cells_check.py"))[-1] == "--smoke"
    block = "python a.py x \\\n  y\n# a comment\n\npython b.py\n"
    assert [c.split() for c in commands(block)] == [["python", "a.py", "x", "y"], ["python", "b.py"]]


def test_every_page_is_in_the_index_and_runs_something():
    index = (LEARN / "README.md").read_text(encoding="utf-8")
    assert PAGES
    for page in PAGES:
        assert f"({page.name})" in index, f"{page.name} is not linked from docs/learn/README.md"
        assert bash_blocks(page), f"{page.name} has no ```bash block"


def test_images_exist_and_are_small():
    for page in [LEARN / "README.md", *PAGES]:
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text(encoding="utf-8")):
            image = (page.parent / target).resolve()
            assert image.is_file(), f"{page.name} shows {target}, which is missing"
            assert image.stat().st_size < 100_000, f"{target} is {image.stat().st_size} bytes"


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_page_commands_run(page: Path, tmp_path: Path):
    """The page's commands in order, in one scratch folder (a later command may read what an
    earlier one wrote), with the cache of generated corpora and tokenizers there too."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), SEQ2SEQ_CACHE_DIR=str(tmp_path / "cache"),
               MPLBACKEND="Agg")
    start = time.perf_counter()
    for block in bash_blocks(page):
        for command in commands(block):
            result = subprocess.run(smoke_command(command), shell=True, cwd=tmp_path, env=env,
                                    capture_output=True, text=True, timeout=240)
            assert result.returncode == 0, f"{page.name}: {command}\n{result.stderr[-3000:]}"
    assert time.perf_counter() - start < 240
