"""Decode a folder written by ``seq2seq-export --format onnx`` with onnxruntime.

The graphs replace the torch model only: ``OnnxStepper`` is a ``seq2seq.search`` Stepper (its state
a dict of arrays with ``index_select``), so greedy and beam search, and the tokenization,
truncation, recasing and output of ``seq2seq.translate.Translator``, are the torch model's own.
onnxruntime is imported when a folder is loaded (``pip install 'seq2seq[export]'``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from seq2seq.errors import CheckpointError
from seq2seq.recase import Recaser
from seq2seq.search import Hypothesis
from seq2seq.tokenization import TokenizerPair
from seq2seq.topologies.base import PredictOptions
from seq2seq.training.checkpoint import load_checkpoint
from seq2seq.translate import Translator

FORMAT = "seq2seq-onnx"  # what seq2seq.export.onnx_export writes, and its version
VERSION = 1
MANIFEST = "manifest.json"
BATCH_AXIS_1 = ("hidden", "cell")  # [layers, N, H]; every other tensor has its rows on axis 0


class OnnxState:
    """The arrays a step reads (encoder outputs and the recurrent state), by name."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays

    def index_select(self, order: Tensor) -> "OnnxState":
        """Repeat, reorder or drop rows (search does not know what the state holds)."""
        rows = order.cpu().numpy()
        return OnnxState({name: np.take(array, rows, axis=1 if name in BATCH_AXIS_1 else 0)
                          for name, array in self.arrays.items()})


class OnnxStepper:
    """The ``Stepper`` of an exported model: ``start`` runs the encoder graph, ``step`` the step
    graph. With a restricted output layer, search's tokens are positions in ``output_ids``, as for
    ``seq2seq.search.ModelStepper``."""

    def __init__(self, model: "OnnxTranslationModel") -> None:
        self.model = model
        self.output_ids = model.output_ids

    def start(self, src: Tensor, src_len: Tensor) -> OnnxState:
        encoder = self.model.manifest["encoder"]
        outputs = self.model.encoder.run(None, {"src": src.cpu().numpy().astype(np.int64),
                                                "src_len": src_len.cpu().numpy().astype(np.int64)})
        return OnnxState(dict(zip(encoder["outputs"], outputs)))

    def step(self, prev_tokens: Tensor, state: OnnxState
             ) -> tuple[Tensor, OnnxState, Optional[Tensor]]:
        if self.output_ids is not None:
            prev_tokens = self.output_ids[prev_tokens]
        feeds = {"prev": prev_tokens.cpu().numpy().astype(np.int64)}
        feeds.update({name: state.arrays[name] for name in self.model.step_inputs[1:]})
        step = self.model.manifest["step"]
        results = dict(zip(step["outputs"], self.model.step.run(None, feeds)))
        arrays = dict(state.arrays)
        arrays.update({name: results[f"next_{name}"] for name in step["recurrent"]})
        attention = results.get("attention")
        return (torch.from_numpy(results["log_probs"]), OnnxState(arrays),
                None if attention is None else torch.from_numpy(attention))

    def token_ids(self, hypotheses: list[Hypothesis]) -> list[Hypothesis]:
        """Hypotheses of this stepper's tokens with vocabulary ids."""
        if self.output_ids is None:
            return hypotheses
        return [h._replace(tokens=self.output_ids[torch.tensor(h.tokens, dtype=torch.long)].tolist())
                for h in hypotheses]


class OnnxTranslationModel(nn.Module):
    """An exported encoder-decoder: its two graphs opened in onnxruntime. A module without
    parameters (the translator's ``eval()`` and the search's device lookup work on it: the CPU),
    decoded through ``search_stepper``."""

    def __init__(self, folder: Path, manifest: dict[str, Any], output_ids: Optional[Tensor],
                 threads: int = 0) -> None:
        super().__init__()
        self.folder, self.manifest, self.output_ids = folder, manifest, output_ids
        self.encoder = open_graph(folder / manifest["encoder"]["file"], threads)
        self.step = open_graph(folder / manifest["step"]["file"], threads)
        # the inputs the step graph kept (an unused one, e.g. the summary with attention, is
        # dropped by the exporter)
        self.step_inputs = [i.name for i in self.step.get_inputs()]

    def search_stepper(self) -> OnnxStepper:
        return OnnxStepper(self)


def open_graph(path: Path, threads: int = 0) -> Any:
    """The graph at ``path`` opened for onnxruntime's CPU provider, with ``threads`` threads (0:
    onnxruntime's default, one per core)."""
    try:
        import onnxruntime
    except ImportError:
        raise CheckpointError(f"{path.parent}: an exported model needs onnxruntime: pip install "
                              "'seq2seq[export]' (or onnxruntime)") from None
    check_self_contained(path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own types for missing or corrupt graphs
        raise CheckpointError(f"{path}: cannot load the ONNX graph: {type(err).__name__}: "
                              f"{err}") from None


def check_self_contained(path: Path) -> None:
    """Refuse a graph that is a link or whose weights point at other files (ONNX external data:
    a stranger's folder could read any file of this machine into the weights); the graphs
    seq2seq-export writes hold their weights inside."""
    try:
        import onnx
    except ImportError:
        raise CheckpointError(f"{path.parent}: an exported model needs onnx to be checked: pip "
                              "install 'seq2seq[export]' (or onnx)") from None
    if path.is_symlink():
        raise CheckpointError(f"{path}: a link; expected the graph file itself")
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as err:  # protobuf's decode errors have no common type
        raise CheckpointError(f"{path}: not an ONNX graph: {type(err).__name__}: {err}") from None
    tensors = list(graph.initializer) + [attribute.t for node in graph.node
                                         for attribute in node.attribute if attribute.HasField("t")]
    if any(tensor.data_location == onnx.TensorProto.EXTERNAL for tensor in tensors):
        raise CheckpointError(f"{path}: its weights point at files outside the graph (ONNX "
                              "external data); expected a graph written by seq2seq-export")


def read_manifest(folder: Path) -> dict[str, Any]:
    """The folder's manifest, checked: format, version and topology, graph files present."""
    path = folder / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{folder}: a folder, but no {MANIFEST}: expected a model exported "
                              "by seq2seq-export (or give a checkpoint file)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a seq2seq export (expected format {FORMAT!r})")
    if not isinstance(manifest.get("version"), int) or manifest["version"] > VERSION:
        raise CheckpointError(f"{path}: export version {manifest.get('version')!r}; this seq2seq "
                              f"reads version {VERSION} or older: export the checkpoint again")
    if manifest.get("topology") != "translate":
        raise CheckpointError(f"{path}: topology {manifest.get('topology')!r}; exported models "
                              "are translate models")
    for key in ("encoder", "step"):
        name = (manifest.get(key) or {}).get("file")
        # a file name of the folder, never a path leading out of it
        if not isinstance(name, str) or Path(name).name != name or not (folder / name).is_file():
            raise CheckpointError(f"{path}: {key}.file={name!r} is not a graph file of {folder}")
    return manifest


def load_translator(folder: str | Path, threads: int = 0, **search_overrides: Any) -> Translator:
    """A ``Translator`` that decodes the exported model in ``folder`` with onnxruntime;
    ``search_overrides`` (beam, batch_size, ...) replace the checkpoint's search settings."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    search = load_checkpoint(folder / "search.pt")  # checks the stored config as for a checkpoint
    try:
        tokenizers = TokenizerPair.from_state_dict(search["tokenizers"])
    except Exception as err:  # sentencepiece raises RuntimeError or TypeError on junk
        raise CheckpointError(f"{folder / 'search.pt'}: tokenizers are not SentencePiece models "
                              f"({type(err).__name__}: {err})") from None
    output_ids = search.get("output_ids")
    model = OnnxTranslationModel(folder, manifest, output_ids, threads)
    recaser = Recaser.from_state_dict(search["recaser"]) if search.get("recaser") else None
    return Translator.from_parts(model, tokenizers, OmegaConf.create(search["config"]), recaser,
                                 **search_overrides)


def load_exported(paths: Sequence[str | Path], options: PredictOptions) -> Translator:
    """``seq2seq.predict.load_predictor`` for an exported folder (one: no ensembles)."""
    if len(paths) > 1:
        raise CheckpointError(f"{paths[0]}: an exported model decodes alone; ensembles are of "
                              "checkpoint files")
    return load_translator(paths[0], beam=options.beam, batch_size=options.batch_size,
                           length_penalty=options.length_penalty, precision=options.precision,
                           sampling=options.sampling, temperature=options.temperature,
                           top_k=options.top_k, top_p=options.top_p, seed=options.seed)
