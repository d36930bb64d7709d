"""Building objects from Hydra configs, with this package's errors passed through unwrapped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate

from seq2seq.errors import ConfigError, Seq2SeqError


def build(config: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``, except that a ConfigError/DataError raised by a constructor
    comes out as itself (naming the option), not wrapped in Hydra's InstantiationException, and
    an unknown or misspelt key becomes a ConfigError naming it."""
    try:
        return instantiate(config, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, Seq2SeqError):
            raise cause from None
        if isinstance(cause, TypeError):  # e.g. an unexpected keyword argument: a misspelt key
            raise ConfigError(f"{err}") from None
        raise


def config_dir() -> Path:
    """The Hydra config tree: ``seq2seq/conf`` in an installed package, or the repository's
    ``conf/`` beside the package in a source checkout."""
    package = Path(__file__).resolve().parent
    installed = package / "conf"
    return installed if (installed / "train.yaml").is_file() else package.parent / "conf"
