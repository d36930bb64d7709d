"""The driver behind ``seq2seq-train``: set up the run, let its topology (``conf/topology``:
translate, classify, tag or generate) prepare the data and the model, train, choose the test
checkpoint, and let the topology score it and write the report. The steps are the same for every
topology; what each step does for a task is the topology's."""

from __future__ import annotations

import logging
import random
from contextlib import ExitStack
from pathlib import Path
from typing import Any, cast

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from seq2seq.config import build
from seq2seq.device import resolve_device
from seq2seq.errors import ConfigError
from seq2seq.models import count_parameters
from seq2seq.runtime import SharedCores, keep_freed_memory
from seq2seq.topologies.base import PredictOptions, Topology, training_facts
from seq2seq.training import run_folder
from seq2seq.training.averaging import average_checkpoints
from seq2seq.training.checkpoint import CheckpointDir, load_checkpoint, save_checkpoint
from seq2seq.training.distributed import Distributed, init_distributed, shutdown_distributed
from seq2seq.training.settings import TrainerSettings
from seq2seq.training.state import LOWER_IS_BETTER, Objective, TrainState
from seq2seq.training.trainer import Trainer
from seq2seq.training.transfer import check_init_from, initialize_from

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def run_training(cfg: DictConfig, run_dir: str | Path, overrides: list[str] | None = None
                 ) -> dict[str, Any]:
    """Train, then evaluate the best checkpoint on the test split and write the report.

    Under torchrun, every rank trains its share and rank 0 writes everything; the other ranks
    return an empty dict.
    """
    device = resolve_device(cfg.get("device"), "device")  # no GPU: a ConfigError before any work
    dist_cfg = cfg.get("distributed") or {}
    distributed = init_distributed(dist_cfg.get("backend", "auto"),
                                   dist_cfg.get("timeout_minutes", 30), device)
    try:
        return _run_training(cfg, Path(run_dir), overrides, distributed)
    finally:
        shutdown_distributed()


def _run_training(cfg: DictConfig, run_dir: Path, overrides: list[str] | None,
                  distributed: Distributed) -> dict[str, Any]:
    # Hydra names a run folder per process; rank 0's is the job's.
    run_dir = Path(distributed.broadcast(str(run_dir)))
    with ExitStack() as held:
        refusal = None
        if distributed.is_main:  # rank 0 checks, locks and claims the folder for the job
            try:
                run_folder.check_writable(run_dir)
                held.enter_context(run_folder.run_lock(run_dir))
                run_folder.claim(run_dir, bool(cfg.get("resume")), bool(cfg.get("overwrite")))
            except ConfigError as err:
                refusal = err
        # Every rank stops on rank 0's refusal, instead of waiting for it in a collective.
        message = distributed.broadcast(None if refusal is None else str(refusal))
        if message is not None:
            raise refusal or run_folder.RunFolderError(message)
        return _train_and_report(cfg, run_dir, overrides, distributed)


def _train_and_report(cfg: DictConfig, run_dir: Path, overrides: list[str] | None,
                      distributed: Distributed) -> dict[str, Any]:
    # auto: this process's share of the cores, re-divided as other trainings start and end
    with SharedCores(cfg.get("num_threads")):
        return _train_and_report_on_cores(cfg, run_dir, overrides, distributed)


def _train_and_report_on_cores(cfg: DictConfig, run_dir: Path, overrides: list[str] | None,
                               distributed: Distributed) -> dict[str, Any]:
    seed_everything(cfg.seed)
    if cfg.get("keep_freed_memory"):
        keep_freed_memory()
    check_init_from(cfg)
    topology: Topology = build(cfg.topology)  # conf/topology: translate, classify, tag, generate
    setup = topology.setup(cfg, distributed)
    init_facts: dict[str, Any] = {}
    if cfg.get("init_from") and not cfg.get("resume"):  # a resumed run has its own weights
        init_facts = initialize_from(setup.model, cfg.init_from,
                                     cast(dict, OmegaConf.to_container(cfg, resolve=True)))
    setup.model.to(resolve_device(cfg.get("device"), "device"))  # batches follow the model
    state = train_model(cfg, run_dir, setup.model, setup.objective, setup.batches, distributed)
    if not distributed.is_main:
        return {}
    best, averaging = choose_test_checkpoint(cfg, run_dir, setup.model, setup.objective, state)
    predictor = topology.load_predictor(load_checkpoint(best), [best],
                                        PredictOptions(device=cfg.get("device")))
    facts = {"checkpoint": str(best), "num_params": count_parameters(predictor.model),
             **training_facts(state), **setup.facts, **init_facts, "learning_curve": "learning_curve.png",
             "overrides": list(overrides or []), "seed": cfg.seed, **averaging}
    return topology.test_report(cfg, predictor, setup.data, run_dir, facts)


def train_model(cfg: DictConfig, run_dir: Path, model: nn.Module, objective: Objective,
                batches: Any, distributed: Distributed) -> TrainState:
    """The steps every topology shares: the trainer, resuming, and the training itself."""
    settings: TrainerSettings = build(cfg.trainer)
    if batches.num_batches(0) == 0:
        raise ConfigError(f"the training set makes fewer batches than the {distributed.world_size} "
                          "ranks: use fewer ranks or a smaller trainer.batch_tokens")
    if distributed.is_main:
        run_folder.check_space(run_dir, count_parameters(model), settings.keep_checkpoints,
                               settings.ema_decay > 0)
    if distributed.enabled:
        # A different dropout stream on each rank; DistributedDataParallel (training/step.py)
        # gives every rank rank 0's initial weights.
        torch.manual_seed(cfg.seed + distributed.rank)
    config = cast(dict, OmegaConf.to_container(cfg, resolve=True))  # a DictConfig gives a dict
    trainer = Trainer(settings, model, objective, run_dir, config, distributed)
    if cfg.get("resume"):  # the run folder's last.pt is there (run_folder.claim)
        trainer.resume(run_dir / "checkpoints" / "last.pt")
    return trainer.fit(batches)


def choose_test_checkpoint(cfg: DictConfig, run_dir: Path, model: nn.Module,
                           objective: Objective, state: TrainState) -> tuple[Path, dict[str, Any]]:
    """The checkpoint a run is tested with, and the report's facts about the choice.

    best.pt, unless ``trainer.average_last`` >= 2: then the last that many step checkpoints are
    averaged into averaged.pt, which is tested instead when it validates better than best.pt on
    the early-stopping metric. ``model`` (the run's own, its training done) holds the average
    for that validation.
    """
    checkpoints = CheckpointDir(run_dir / "checkpoints")
    last = int(cfg.trainer.get("average_last") or 0)
    numbered = checkpoints.numbered()[-last:] if last >= 2 else []
    if len(numbered) < 2:
        return checkpoints.best, {}
    metric = cfg.trainer.early_stopping_metric
    averaged = checkpoints.folder / "averaged.pt"
    payload = average_checkpoints(numbered)
    save_checkpoint(averaged, payload)
    model.load_state_dict(payload["model"])
    model.eval()
    value = float(objective.validate(model)[metric])
    best = state.best_metrics.get(metric)
    better = best is None or (value < best if metric in LOWER_IS_BETTER else value > best)
    chosen = averaged if better else checkpoints.best
    log.info("averaged %s: validation %s %.4g (best.pt: %s); testing %s",
             ", ".join(p.name for p in numbered), metric, value, best, chosen.name)
    return chosen, {"averaged_checkpoints": [p.name for p in numbered],
                    f"averaged_valid_{metric}": value}
