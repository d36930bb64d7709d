"""Building objects from Hydra configs, with this package's errors passed through unwrapped."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, cast

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

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


def packaged_preset(name: str) -> DictConfig:
    """A preset file of the packaged config tree, e.g. ``search/beam.yaml``: the values a
    checkpoint's stored config is read over, for the keys it predates."""
    return cast(DictConfig, OmegaConf.load(config_dir() / name))  # every preset is a mapping


# The topologies a checkpoint may name (name -> class of conf/topology/NAME.yaml); checkpoints
# written before the topologies were classes name a ``run`` function and a ``task``.
TOPOLOGY_CLASSES = {
    "translate": "seq2seq.topologies.translate.Translate",
    "classify": "seq2seq.topologies.labelling.Classify",
    "tag": "seq2seq.topologies.labelling.Tag",
    "generate": "seq2seq.topologies.generate.Generate",
}
LEGACY_TOPOLOGY_RUNS = frozenset({"seq2seq.topologies.translation.run",
                                  "seq2seq.topologies.labelling.run",
                                  "seq2seq.topologies.generation.run"})

# The preset that holds each model class's values. A checkpoint written before a key existed takes
# that key's value from here: the value that turns the feature off, as the code did before the key.
MODEL_PRESETS = {
    "seq2seq.models.encoder.RNNEncoder": "model/encoder/_base.yaml",
    "seq2seq.models.decoder.RNNDecoder": "model/decoder/_base.yaml",
    "seq2seq.models.encoder_decoder.EncoderDecoder": "model/encoder_decoder.yaml",
    "seq2seq.models.labelling.SequenceClassifier": "model/classifier.yaml",
    "seq2seq.models.labelling.SequenceTagger": "model/tagger.yaml",
    "seq2seq.models.generator.ConditionedGenerator": "model/generator.yaml",
}


def stored_model_config(stored: Mapping[str, Any] | DictConfig) -> DictConfig:
    """A checkpoint's ``model`` config with the keys it lacks (it predates them) filled in from the
    packaged presets of its classes (``MODEL_PRESETS``); the stored values are kept."""
    def fill(node: Any) -> Any:
        if not isinstance(node, Mapping):
            return node
        filled = {key: fill(value) for key, value in node.items()}
        preset = MODEL_PRESETS.get(str(node.get("_target_")))
        if preset is not None:
            values = cast(dict, OmegaConf.to_container(packaged_preset(preset)))
            for key, value in values.items():
                if key not in filled and key != "defaults" and value != "???" \
                        and not isinstance(value, dict):
                    filled[key] = value
        return filled

    plain = OmegaConf.to_container(stored) if isinstance(stored, DictConfig) else stored
    return OmegaConf.create(fill(plain))
