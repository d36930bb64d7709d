"""What a resumed run may change: the settings of the run it continues are in its checkpoint, and
those that decide what was trained (the data, its order, the model) must stay as they were for
the run to go on exactly; the learning rate and the budgets may change, and do."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Iterator

from seq2seq.errors import ConfigError
from seq2seq.training.lr_schedules import LRSchedule, Plateau
from seq2seq.training.settings import TrainerSettings
from seq2seq.training.state import TrainState

log = logging.getLogger(__name__)

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


def resume_schedule(schedule: LRSchedule, state: TrainState, payload: dict[str, Any],
                    settings: TrainerSettings, config: dict[str, Any], lr_metric: str,
                    path: str | Path) -> None:
    """Give ``schedule`` its memory from the checkpoint ``payload``, unless
    ``trainer.reset_schedule`` (or another schedule) starts it afresh from the current update
    (``state``'s ``schedule_from_*``); a changed ``trainer.lr`` becomes the peak the schedule
    scales, and the plateau's factor so far is dropped, so the run goes on at it."""
    saved_config = payload.get("config", {})
    saved = payload.get("scheduler") or {}
    # Checkpoints from before the schedule group hold ReduceLROnPlateau's state.
    saved_name = saved.get("name", "plateau")
    if settings.reset_schedule or saved_name != schedule.name:
        why = ("trainer.reset_schedule" if settings.reset_schedule else
               f"it used the {saved_name} schedule, this run {schedule.name}")
        state.schedule_from_step = state.step
        state.schedule_from_seconds = state.wall_seconds or state.train_seconds
        state.anneal_from_lr = 0.0
        log.info("%s: %s: the LR schedule starts afresh at step %d", path, why, state.step)
    elif isinstance(schedule, Plateau):
        resume_plateau(schedule, saved, saved_config.get("trainer", {}), settings, lr_metric, path)
    else:
        schedule.load_state_dict(saved)
    if (lr := changed_lr(saved_config, config)) is not None:
        if isinstance(schedule, Plateau):
            schedule.scale = 1.0
        state.anneal_from_lr = 0.0
        log.info("%s: trainer.lr changed; the schedule goes on from lr %g", path, lr)


def resume_plateau(plateau: Plateau, saved: dict[str, Any], saved_trainer: dict[str, Any],
                   settings: TrainerSettings, lr_metric: str, path: str | Path) -> None:
    """The plateau's memory (``saved``; ReduceLROnPlateau's state in older checkpoints), kept
    only while it watches the same figure; a changed factor or patience is logged."""
    saved_lr = float(saved_trainer.get("lr") or settings.lr)
    if "num_bad_epochs" in saved:
        best = saved.get("best")
        saved = {"scale": float(saved.get("_last_lr", [saved_lr])[0]) / saved_lr,
                 "best": None if best is None or not math.isfinite(best) else best,
                 "bad_validations": saved.get("num_bad_epochs", 0)}
    plateau.load_state_dict(saved)
    stored = saved_trainer.get("schedule") or {}
    for key, old_name in (("factor", "lr_decay_factor"), ("patience", "lr_patience")):
        before = stored.get(key, saved_trainer.get(old_name))
        if before is not None and before != getattr(plateau, key):
            log.warning("%s: its plateau had %s %s, this run has %s", path, key, before,
                        getattr(plateau, key))
    saved_metric = saved_trainer.get("lr_metric") or saved_trainer.get("early_stopping_metric")
    if saved_metric not in (None, lr_metric):
        # The memory (best value, bad validations) is of the other figure: start afresh at the
        # LR the run had reached.
        plateau.reset_to(plateau.scale)
        log.warning("%s watched %s for the LR plateau, this run watches %s: the plateau starts "
                    "afresh at lr %.2g", path, saved_metric, lr_metric,
                    max(settings.min_lr, settings.lr * plateau.scale))
