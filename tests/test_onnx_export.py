"""ONNX export: the graphs compute what the torch model does, and an exported folder translates
like its checkpoint through the same search and translator."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import torch

from seq2seq.cli.export import main as export_main
from seq2seq.cli.translate import main as translate_main
from seq2seq.config import TOPOLOGY_CLASSES
from seq2seq.errors import CheckpointError
from seq2seq.export.onnx_export import export_graphs, export_onnx
from seq2seq.export.onnx_runtime import OnnxState, OnnxStepper, OnnxTranslationModel, load_translator
from seq2seq.pipeline import run_training
from seq2seq.predict import load_predictor
from seq2seq.search import ModelStepper, beam_search, greedy_search, max_output_lengths
from seq2seq.tokenization import BOS, EOS
from seq2seq.topologies.base import PredictOptions
from seq2seq.training.checkpoint import load_checkpoint, save_checkpoint
from seq2seq.translate import Translator, build_translation_model
from tests.conftest import compose_train
from tests.test_faults import FAST
from tests.test_smoke import tiny_overrides

pytest.importorskip("onnxruntime")

VOCAB = 23
# model variants: each exercises another path of the graphs (cells, stacks, attention, feeding)
VARIANTS = {
    "gru_bahdanau": [],
    "lstm_luong_feeding": ["model.encoder.cell=lstm", "model.decoder.cell=lstm",
                           "model.encoder.num_layers=2", "model.decoder.num_layers=2",
                           "model.attention=luong", "model.decoder.input_feeding=true"],
    "rnn_without_attention": ["model.encoder.cell=rnn", "model.decoder.cell=rnn",
                              "model.attention=none", "model.encoder.bidirectional=false"],
    "residual_reference_tied": ["model.encoder.num_layers=2", "model.encoder.residual=true",
                                "model.encoder.implementation=reference",
                                "model.decoder.tie_embeddings=true",
                                "model.decoder.output_vocabulary=training_targets"],
}
SMALL = ["model.encoder.embedding_dim=8", "model.encoder.hidden_size=6",
         "model.decoder.embedding_dim=8", "model.decoder.hidden_size=7"]


def variant_model(name: str) -> torch.nn.Module:
    cfg = compose_train(SMALL + VARIANTS[name])
    torch.manual_seed(0)
    model = build_translation_model(cfg.model, VOCAB, VOCAB)
    if model.decoder.output_vocabulary == "training_targets":
        model.decoder.restrict_output(torch.tensor([5, 7, 8, 11, 13, 20]))
    return model.eval()


def padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Three sentences of 7, 4 and 2 ids (EOS last), right-padded: another shape than the trace's."""
    src = torch.tensor([[5, 6, 7, 8, 9, 10, EOS], [11, 12, 13, EOS, 0, 0, 0], [14, EOS, 0, 0, 0, 0, 0]])
    return src, torch.tensor([7, 4, 2])


@pytest.mark.parametrize("name", VARIANTS)
def test_graphs_compute_what_the_model_does_on_a_padded_batch(name, tmp_path):
    model = variant_model(name)
    manifest = export_graphs(model, tmp_path, name)
    onnx_model = OnnxTranslationModel(tmp_path, manifest, model.decoder.output_ids)
    src, src_len = padded_batch()
    with torch.inference_mode():
        memory, state = model.encode(src, src_len)
        onnx_state = OnnxStepper(onnx_model).start(src, src_len)
        arrays = onnx_state.arrays
        torch.testing.assert_close(torch.from_numpy(arrays["states"]), memory.states)
        torch.testing.assert_close(torch.from_numpy(arrays["hidden"]), state.hidden)
        assert (torch.from_numpy(arrays["mask"]) == memory.mask).all()
        # two steps, the second from the state each runtime carried
        torch_stepper, onnx_stepper = ModelStepper(model), OnnxStepper(onnx_model)
        torch_state = torch_stepper.start(src, src_len)
        prev = torch.full((3,), BOS)
        for _ in range(2):
            log_p, torch_state, attention = torch_stepper.step(prev, torch_state)
            onnx_log_p, onnx_state, onnx_attention = onnx_stepper.step(prev, onnx_state)
            torch.testing.assert_close(onnx_log_p, log_p, atol=1e-5, rtol=1e-4)
            if attention is not None:
                torch.testing.assert_close(onnx_attention, attention, atol=1e-5, rtol=1e-4)
                assert (onnx_attention[2, 2:] == 0).all()  # no weight on padding
            prev = log_p.argmax(-1)


@pytest.mark.parametrize("name", ["gru_bahdanau", "lstm_luong_feeding"])
def test_search_through_the_onnx_stepper_finds_what_torch_finds(name, tmp_path):
    model = variant_model(name)
    onnx_model = OnnxTranslationModel(tmp_path, export_graphs(model, tmp_path, name),
                                      model.decoder.output_ids)
    src, src_len = padded_batch()
    limits = max_output_lengths(src_len, 2.0, 10)
    for search in (lambda s, st: greedy_search(s, st, 3, limits),
                   lambda s, st: beam_search(s, st, 3, limits, beam=3, alpha=1.0)):
        with torch.inference_mode():
            torch_stepper, onnx_stepper = ModelStepper(model), OnnxStepper(onnx_model)
            expected = search(torch_stepper, torch_stepper.start(src, src_len))
            found = search(onnx_stepper, onnx_stepper.start(src, src_len))
        assert [h.tokens for h in found] == [h.tokens for h in expected]
        assert [h.score for h in found] == pytest.approx([h.score for h in expected], abs=1e-4)


def test_state_rows_are_reordered_on_their_batch_axis():
    import numpy as np
    state = OnnxState({"hidden": np.arange(6).reshape(1, 3, 2), "states": np.arange(3)})
    picked = state.index_select(torch.tensor([2, 2, 0]))
    assert picked.arrays["hidden"][0, :, 0].tolist() == [4, 4, 0]
    assert picked.arrays["states"].tolist() == [2, 2, 0]


# -- a trained checkpoint ----------------------------------------------------------------------
LINES = ["one two three", "we have twenty-one cats and seven dogs", "", "five",
         "eighty-eight apples, twelve pears and forty birds", "three thousand"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("onnx")
    run_training(compose_train(tiny_overrides(tmp) + FAST + [
        "trainer.max_epochs=30", "trainer.max_steps=120", "trainer.lr=0.01", "data.max_length=20",
        "trainer.validate_every=60"]), tmp / "run")
    return tmp / "run" / "checkpoints" / "best.pt"


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory) -> Path:
    return export_onnx(checkpoint, tmp_path_factory.mktemp("exported") / "model")


@pytest.mark.slow
@pytest.mark.parametrize("beam", [1, 4])
def test_exported_folder_translates_as_its_checkpoint(checkpoint, exported, beam):
    expected = Translator.from_checkpoint(checkpoint, beam=beam).translate(LINES)
    found = load_predictor(exported, PredictOptions(beam=beam)).predict(LINES)
    assert found == expected
    assert len(found) == len(LINES) and found[2] == "" and all(found[i] for i in (0, 1, 3))


@pytest.mark.slow
def test_translate_tool_takes_the_folder_and_it_works_moved(checkpoint, exported, tmp_path):
    text = "\n".join(LINES) + "\n"
    outputs = {}
    moved = Path(shutil.copytree(exported, tmp_path / "elsewhere" / "model"))
    for name, path in (("checkpoint", checkpoint), ("moved", moved)):
        out = io.StringIO()
        code = translate_main(["--checkpoint", str(path), "--beam", "3"],
                              stdin=io.BytesIO(text.encode()), stdout=out)
        assert code == 0
        outputs[name] = out.getvalue()
    assert outputs["moved"] == outputs["checkpoint"]
    assert outputs["moved"].count("\n") == len(LINES)
    manifest = json.loads((moved / "manifest.json").read_text())
    assert manifest["format"] == "seq2seq-onnx" and manifest["version"] == 1
    assert sorted(p.name for p in moved.iterdir()) == ["encoder.onnx", "manifest.json",
                                                       "search.pt", "step.onnx"]


@pytest.mark.slow
def test_evaluate_tool_scores_the_folder_as_its_checkpoint(checkpoint, exported, tmp_path):
    from seq2seq.cli.evaluate import main as evaluate_main

    src, ref = tmp_path / "test.src", tmp_path / "test.ref"
    src.write_text("\n".join(line for line in LINES if line) + "\n")
    ref.write_text("\n".join(line.upper() for line in LINES if line) + "\n")
    scores = {}
    for name, path in (("checkpoint", checkpoint), ("exported", exported)):
        code = evaluate_main(["--checkpoint", str(path), "--src", str(src), "--ref", str(ref),
                              "--beam", "2", "--report-dir", str(tmp_path / name),
                              "--bootstrap", "0", "--attention-plots", "0"])
        assert code == 0
        report = json.loads((tmp_path / name / "report.json").read_text())
        scores[name] = (report["bleu"], report["chrf"])
    assert scores["exported"] == scores["checkpoint"]


@pytest.mark.slow
def test_exporting_again_replaces_the_folder_and_keeps_search_settings(checkpoint, tmp_path):
    out = tmp_path / "model"
    export_onnx(checkpoint, out)
    (out / "step.onnx").write_bytes(b"junk")
    export_onnx(checkpoint, out)  # an earlier export is replaced whole
    translator = load_translator(out, beam=2)
    assert translator.search.beam == 2 and translator.max_input_length == 20
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


@pytest.mark.slow
def test_other_topologies_get_a_clear_error(checkpoint, tmp_path, capsys):
    payload = load_checkpoint(checkpoint)
    payload["config"]["topology"] = {"_target_": TOPOLOGY_CLASSES["classify"]}
    classify = tmp_path / "classify.pt"
    save_checkpoint(classify, {k: v for k, v in payload.items() if k not in ("format", "version")})
    with pytest.raises(CheckpointError, match=r"a classify checkpoint; .* exports translate"):
        export_onnx(classify, tmp_path / "out")
    assert export_main(["--checkpoint", str(classify), "--out", str(tmp_path / "out")]) == 2
    assert "classify" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_folder_that_is_not_an_export_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no manifest.json"):
        load_predictor(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "seq2seq-onnx", "version": 99,
                                                        "topology": "translate"}))
    with pytest.raises(CheckpointError, match="version 99"):
        load_predictor(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({
        "format": "seq2seq-onnx", "version": 1, "topology": "translate",
        "encoder": {"file": "../encoder.onnx"}, "step": {"file": "step.onnx"}}))
    with pytest.raises(CheckpointError, match="encoder.file='../encoder.onnx'"):
        load_predictor(tmp_path)


def test_export_refuses_to_overwrite_a_folder_of_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    # checked first: the checkpoint is not even read
    with pytest.raises(CheckpointError, match="not an earlier export"):
        export_onnx(tmp_path / "never_read.pt", tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    (tmp_path / "manifest.json").write_text('{"name": "a web app"}')  # not an export's manifest
    with pytest.raises(CheckpointError, match="not an earlier export"):
        export_onnx(tmp_path / "never_read.pt", tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_export_tool_prints_the_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        export_main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("seq2seq ")


def test_a_graph_whose_weights_point_at_other_files_is_refused(tmp_path):
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    from seq2seq.export.onnx_runtime import check_self_contained

    weight = numpy_helper.from_array(np.ones((2, 2), np.float32), name="w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 2])],
                              [weight])
    inside = tmp_path / "inside.onnx"
    onnx.save(helper.make_model(graph), str(inside))
    check_self_contained(inside)  # weights inside: accepted
    outside = tmp_path / "outside.onnx"
    onnx.save(helper.make_model(graph), str(outside), save_as_external_data=True,
              all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    with pytest.raises(CheckpointError, match="external data"):
        check_self_contained(outside)
    (tmp_path / "link.onnx").symlink_to(inside)
    with pytest.raises(CheckpointError, match="a link"):
        check_self_contained(tmp_path / "link.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\xff" * 64)
    with pytest.raises(CheckpointError, match="not an ONNX graph"):
        check_self_contained(tmp_path / "junk.onnx")
