"""The topology registry: the built-in topologies, checkpoints of every era, foreign targets."""

import copy
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from seq2seq.config import LEGACY_TOPOLOGY_RUNS as LEGACY_RUNS
from seq2seq.config import TOPOLOGY_CLASSES as BUILT_IN
from seq2seq.config import stored_model_config
from seq2seq.errors import CheckpointError, ConfigError
from seq2seq.topologies.generate import Generate
from seq2seq.topologies.labelling import Classify, Tag
from seq2seq.topologies.registry import checkpoint_topology, topology_named
from seq2seq.topologies.translate import Translate
from seq2seq.training.checkpoint import load_checkpoint, save_checkpoint
from seq2seq.training.trainer import Trainer
from seq2seq.translate import build_translation_model
from tests.conftest import CONF, compose_train, group_settings


def test_the_registry_names_the_classes_the_topology_configs_build():
    for name, target in BUILT_IN.items():
        assert OmegaConf.load(CONF / "topology" / f"{name}.yaml")._target_ == target
        assert topology_named(name).name == name
    assert sorted(BUILT_IN) == sorted(p.stem for p in (CONF / "topology").glob("*.yaml"))


@pytest.mark.parametrize("stored,kind", [
    ({}, Translate),  # checkpoints from before the topology group
    ({"_target_": "seq2seq.topologies.translation.run", "_partial_": True}, Translate),
    ({"_target_": "seq2seq.topologies.labelling.run", "_partial_": True, "task": "tag",
      "joint_decoding": False, "augment_copies": 1}, Tag),
    ({"_target_": "seq2seq.topologies.generation.run", "_partial_": True, "task": "generate",
      "temperature": 0.3, "top_k": 5, "max_length": 12, "judge_checkpoint": None}, Generate),
])
def test_checkpoints_of_the_run_function_era_map_to_the_same_classes(stored, kind):
    assert {p.rsplit(".", 1)[0] for p in LEGACY_RUNS} == {"seq2seq.topologies.translation",
                                                           "seq2seq.topologies.labelling",
                                                           "seq2seq.topologies.generation"}
    topology = checkpoint_topology({"config": {"topology": stored}})
    assert type(topology) is kind
    for key, value in stored.items():
        if not key.startswith("_") and key != "task":
            assert getattr(topology, key) == value  # stored settings win over the YAML's


def test_a_stored_topology_lacking_newer_keys_takes_the_configs_values():
    old_classify = {"_target_": "seq2seq.topologies.labelling.run", "task": "classify",
                    "auxiliary_tags": True}  # before class_loss_weight and augment_copies existed
    topology = checkpoint_topology({"config": {"topology": old_classify}})
    assert type(topology) is Classify and topology.auxiliary_tags
    assert topology.class_loss_weight == 1.0 and topology.augment_copies == 0


def test_a_foreign_topology_is_refused():
    with pytest.raises(CheckpointError, match="topology._target_='my.Topology': a checkpoint may "
                                              "name one of the built-in topologies"):
        checkpoint_topology({"config": {"topology": {"_target_": "my.Topology"}}})
    with pytest.raises(ConfigError, match="topology 'summarize': expected one of translate"):
        topology_named("summarize")


def test_a_missing_judge_checkpoint_fails_before_training(tmp_path):
    with pytest.raises(ConfigError, match="topology.judge_checkpoint=.*nothing.pt: no such file"):
        Generate(str(tmp_path / "nothing.pt"), 0.7, 0, 40)


class Constant:
    metrics = ("loss",)

    def loss(self, model, batch, teacher_forcing, smoothing):
        return model.weight.sum()

    def validate(self, model):
        return {"loss": 1.0}

    def checkpoint_extras(self):
        return {}


def test_a_checkpoint_with_the_old_best_bleu_counter_resumes(tmp_path: Path):
    settings = group_settings("trainer", "default", early_stopping_metric="loss")
    trainer = Trainer(settings, torch.nn.Linear(2, 1), Constant(), tmp_path, {})
    path = trainer.save_last()
    payload = load_checkpoint(path)
    payload["trainer"]["best_bleu"] = 12.5  # a TrainState field until best_metrics replaced it
    save_checkpoint(path, payload)
    resumed = Trainer(settings, torch.nn.Linear(2, 1), Constant(), tmp_path, {})
    resumed.resume(path)
    assert resumed.state.step == trainer.state.step and not hasattr(resumed.state, "best_bleu")


@pytest.mark.parametrize("experiment,missing", [
    ("multi30k_en_de", ["share_embeddings", "decoder.output_vocabulary", "decoder.word_dropout",
                        "encoder.implementation", "encoder.residual"]),
    ("snips_slots", ["word_embeddings", "lexicon_features", "byte_features", "word_dropout"]),
    ("snips_generate", ["decoder.output_vocabulary"]),
])
def test_a_stored_model_config_older_than_a_key_builds_with_the_presets_value(experiment, missing):
    """Checkpoints store the model config; one written before a key existed lacks it, and takes the
    value the presets give it (the one that leaves the later feature off)."""
    full = OmegaConf.to_container(compose_train([f"experiment={experiment}"]).model, resolve=True)
    old = copy.deepcopy(full)
    for key in missing:
        *parents, last = key.split(".")
        node = old
        for parent in parents:
            node = node[parent]
        del node[last]
    filled = OmegaConf.to_container(stored_model_config(old))
    for key in missing:
        value = OmegaConf.select(OmegaConf.create(filled), key)
        assert value in (False, 0, 0.0, "all", "torch"), (key, value)  # the feature is off
    assert filled.keys() == full.keys()


def test_a_translation_model_of_an_older_config_builds_as_before():
    full = OmegaConf.to_container(compose_train(["experiment=multi30k_en_de"]).model, resolve=True)
    old = copy.deepcopy(full)
    del old["share_embeddings"], old["decoder"]["output_vocabulary"], old["encoder"]["residual"]
    torch.manual_seed(0)
    before = build_translation_model(full, 37, 41)
    torch.manual_seed(0)
    after = build_translation_model(stored_model_config(old), 37, 41)
    assert before.state_dict().keys() == after.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(before.state_dict().values(),
                                                 after.state_dict().values()))
