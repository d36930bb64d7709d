"""What a resumed run may change: the settings of the run it continues are in its checkpoint, and
those that decide what was trained (the data, its order, the model) must stay as they were for
the run to go on exactly; the learning rate and the budgets may change, and do."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from seq2seq.errors import ConfigError

# Settings that decide the data, the batches' order or the model: a resumed run keeps them.
EXACT = ("seed", "topology", "model", "tokenizer", "data", "trainer.batch_tokens",
         "trainer.max_sentences", "trainer.accumulate_batches")
# Where the same corpus and caches live may change (a moved folder, another node); what they hold
# may not. The topology's decoding settings change nothing that was trained.
MAY_MOVE = ("data.root", "data.download_dir", "data.download", "tokenizer.cache_dir",
            "topology.judge_checkpoint", "topology.temperature", "topology.top_k",
            "topology.max_length", "topology.joint_decoding")


def flat(config: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf of a nested config."""
    if isinstance(config, dict):
        for key, value in config.items():
            yield from flat(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, config


def check_resumable(stored: dict[str, Any], new: dict[str, Any], path: str | Path) -> None:
    """A ConfigError naming every setting in ``EXACT`` that differs between the checkpoint's
    config (``stored``) and this run's (``new``); keys the checkpoint predates are not compared."""
    before, after = dict(flat(stored)), dict(flat(new))
    changed = [f"{key}: {before[key]!r} -> {value!r}" for key, value in after.items()
               if key in before and before[key] != value and key not in MAY_MOVE
               and any(key == part or key.startswith(part + ".") for part in EXACT)]
    if changed:
        raise ConfigError(f"{path}: resume=true with settings that change what the run trains "
                          f"on or its order: {'; '.join(changed)}. Put them back to resume "
                          "exactly, or train a new run in another folder (hydra.run.dir=...)")


def changed_lr(stored: dict[str, Any], new: dict[str, Any]) -> float | None:
    """The new ``trainer.lr`` when it differs from the checkpoint's, else None."""
    before = (stored.get("trainer") or {}).get("lr")
    after = (new.get("trainer") or {}).get("lr")
    return after if before is not None and after is not None and after != before else None
