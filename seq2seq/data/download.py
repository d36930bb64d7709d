"""Fetch Multi30k (WMT16 multimodal task 1, text only) from the dataset's public repository."""

from __future__ import annotations

import gzip
import logging
import shutil
import urllib.request
from pathlib import Path
from typing import Sequence

from seq2seq.atomic import atomic_file
from seq2seq.errors import DataError

log = logging.getLogger(__name__)

MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/{name}.gz"
MULTI30K_SPLITS = ("train", "val", "test_2016_flickr")


def download_multi30k(
    cache_dir: str | Path, langs: Sequence[str] = ("en", "de"),
    splits: Sequence[str] = MULTI30K_SPLITS, url: str = MULTI30K_URL, timeout: float = 60.0,
) -> Path:
    """Download and unpack ``{split}.{lang}`` files into ``cache_dir`` (skipping those present).

    Each file is written to a temporary name and renamed when complete, so an interrupted download
    never leaves a truncated corpus file behind. ``url`` may be a ``file://`` template (tests).
    """
    root = Path(cache_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    for split in splits:
        for lang in langs:
            name = f"{split}.{lang}"
            target = root / name
            if target.is_file():
                continue
            source = url.format(name=name)
            log.info("Downloading %s", source)
            try:
                with urllib.request.urlopen(source, timeout=timeout) as response, \
                        gzip.GzipFile(fileobj=response) as unzipped, \
                        atomic_file(target, "wb") as out:
                    shutil.copyfileobj(unzipped, out)
            except (OSError, EOFError) as err:
                raise DataError(f"could not download {source} to {target}: {err}") from err
    return root
