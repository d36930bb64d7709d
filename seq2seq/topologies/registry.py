"""The one place that maps a topology's name, or a checkpoint, to its class.

A checkpoint's stored config names its topology by ``topology._target_``; only the built-in
topologies (``seq2seq.config.TOPOLOGY_CLASSES``) are built from a stored config (a checkpoint
never imports code of its choosing). Checkpoints written before the topologies were classes name
a ``run`` function and a ``task``: they map to the same classes.
"""

from __future__ import annotations

from typing import Any, Mapping

from omegaconf import OmegaConf

from seq2seq.config import LEGACY_TOPOLOGY_RUNS, TOPOLOGY_CLASSES, build, packaged_preset
from seq2seq.errors import CheckpointError, ConfigError


def topology_named(name: str, stored: Mapping[str, Any] | None = None) -> Any:
    """The built-in topology ``name`` with its settings from ``conf/topology/NAME.yaml``,
    overridden by ``stored`` (a checkpoint's)."""
    if name not in TOPOLOGY_CLASSES:
        raise ConfigError(f"topology {name!r}: expected one of {', '.join(TOPOLOGY_CLASSES)}")
    kept = {k: v for k, v in (stored or {}).items() if k not in ("_target_", "_partial_", "task")}
    return build(OmegaConf.merge(packaged_preset(f"topology/{name}.yaml"), kept))


def checkpoint_topology(payload: Mapping[str, Any]) -> Any:
    """The topology a loaded checkpoint was trained for, built from its stored settings."""
    stored = payload["config"].get("topology") or {}
    target = stored.get("_target_")
    names = {v: k for k, v in TOPOLOGY_CLASSES.items()}
    if target in names:
        return topology_named(names[target], stored)
    if target is None or target in LEGACY_TOPOLOGY_RUNS:
        return topology_named(str(stored.get("task") or "translate"), stored)
    raise CheckpointError(f"topology._target_={target!r}: a checkpoint may name one of the "
                          f"built-in topologies ({', '.join(TOPOLOGY_CLASSES.values())})")
