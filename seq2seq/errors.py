"""Errors a user can act on: each names the option, or the file and line, and what was expected."""


class Seq2SeqError(Exception):
    """Base class of the errors this package raises on bad input."""


class ConfigError(Seq2SeqError, ValueError):
    """A configuration option has a value the code cannot use."""


class DataError(Seq2SeqError, ValueError):
    """A corpus file is missing, misaligned or unreadable."""


class CheckpointError(Seq2SeqError, ValueError):
    """A checkpoint file is truncated, corrupt or not written by this project."""


def check_choice(option: str, value: object, choices: tuple) -> None:
    """Raise ConfigError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{option}={value!r} is not supported; expected one of {list(choices)}")


def check_range(option: str, value: float, low: float | None = None, high: float | None = None) -> None:
    """Raise ConfigError unless low <= value <= high (either bound may be None)."""
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ConfigError(f"{option}={value!r} is out of range; expected a value in [{lo}, {hi}]")
