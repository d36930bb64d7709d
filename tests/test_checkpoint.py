import pytest
import torch

from seq2seq.cli.evaluate import main as evaluate_main
from seq2seq.cli.translate import main as translate_main
from seq2seq.errors import CheckpointError
from seq2seq.training.checkpoint import load_checkpoint, save_checkpoint


def test_save_is_atomic_and_loads(tmp_path):
    path = tmp_path / "ckpt" / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "blob": b"spm", "config": {}})
    payload = load_checkpoint(path)
    assert payload["blob"] == b"spm" and payload["format"] == "seq2seq-checkpoint"
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left


def test_failed_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1, "config": {}})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        save_checkpoint(path, {"step": 2, "bad": Unpicklable()})
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "best.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(1000)}})
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="best.pt: cannot read checkpoint"):
        load_checkpoint(path)


def test_foreign_checkpoint(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="not a seq2seq checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nothing.pt")


def hostile_checkpoint(tmp_path, config):
    path = tmp_path / "hostile.pt"
    save_checkpoint(path, {"model": {}, "tokenizers": {}, "config": config})
    return path


@pytest.mark.parametrize("config,key", [
    ({"model": {"_target_": "shutil.copyfile"}}, "model._target_='shutil.copyfile'"),
    ({"model": {"_target_": "seq2seq.models.encoder_decoder.EncoderDecoder",
                "encoder": {"_target_": "shutil.copyfile"}}}, "model.encoder._target_"),
    ({"model": {"encoder": {"_target_": "seq2seq.data.download.download_multi30k"}}},
     "model.encoder._target_='seq2seq.data.download.download_multi30k'"),
    # Hydra walks a target's dots through attributes: a package prefix is not enough
    ({"model": {"encoder": {"_target_": "seq2seq.models.encoder.torch.serialization.os.system"}}},
     "model.encoder._target_='seq2seq.models.encoder.torch.serialization.os.system'"),
    ({"topology": {"_target_": "seq2seq.topologies.translate.torch.serialization.os.system"}},
     "topology._target_"),
    ({"topology": {"_target_": "seq2seq.topologies.labelling.Tag",
                   "substitution_groups": {"_target_": "shutil.copyfile"}}},
     "topology.substitution_groups._target_"),
    ({"trainer": {"_target_": "os.system"}}, "trainer._target_='os.system'"),
])
def test_a_stored_config_builds_only_this_packages_code(tmp_path, config, key):
    """A checkpoint's config is built with Hydra, which imports what a _target_ names: only
    this package's models and topologies pass, checked over the whole tree before any build."""
    config = {k: {**v, "_args_": [str(tmp_path / "source"), str(tmp_path / "written")]}
              if k == "model" and v.get("_target_") == "shutil.copyfile" else v
              for k, v in config.items()}
    (tmp_path / "source").write_text("x")
    with pytest.raises(CheckpointError, match=f"hostile.pt: config key {key}.*never imports"):
        load_checkpoint(hostile_checkpoint(tmp_path, config))
    assert not (tmp_path / "written").exists()


def test_the_tools_refuse_a_hostile_checkpoint_before_running_anything(tmp_path, capsys):
    source, written = tmp_path / "source", tmp_path / "written"
    source.write_text("x")
    path = hostile_checkpoint(tmp_path, {"model": {"_target_": "shutil.copyfile",
                                                   "_args_": [str(source), str(written)]}})
    (tmp_path / "in.txt").write_text("hello\n")
    assert translate_main(["--checkpoint", str(path), "--input", str(tmp_path / "in.txt")]) == 2
    assert evaluate_main(["--checkpoint", str(path), "--src", str(tmp_path / "in.txt"),
                          "--ref", str(tmp_path / "in.txt"), "--report-dir", str(tmp_path)]) == 2
    assert not written.exists()
    assert capsys.readouterr().err.count("model._target_='shutil.copyfile'") == 2


def test_a_stored_config_holds_no_interpolations(tmp_path):
    with pytest.raises(CheckpointError, match="config key data.root='\\$\\{oc.env:HOME\\}' is an "
                                              "interpolation"):
        load_checkpoint(hostile_checkpoint(tmp_path, {"data": {"root": "${oc.env:HOME}"}}))


def test_a_checkpoint_without_a_config_names_what_is_missing(tmp_path):
    path = tmp_path / "bare.pt"
    save_checkpoint(path, {"model": {}})
    with pytest.raises(CheckpointError, match="bare.pt: the checkpoint holds no config"):
        load_checkpoint(path)


def test_a_checkpoint_with_broken_parts_names_the_file_and_the_key(tmp_path, capsys):
    (tmp_path / "in.txt").write_text("hello\n")
    cases = {"no_model.pt": ({"tokenizers": {"src": b"x", "tgt": b"x"}, "config": {}}, "no 'model'"),
             "no_tokenizers.pt": ({"model": {}, "config": {}}, "no 'tokenizers'"),
             "junk_spm.pt": ({"model": {}, "tokenizers": {"src": b"junk", "tgt": b"junk"},
                              "config": {}}, "tokenizers.src is not a SentencePiece model")}
    for name, (payload, message) in cases.items():
        save_checkpoint(tmp_path / name, payload)
        assert translate_main(["--checkpoint", str(tmp_path / name),
                               "--input", str(tmp_path / "in.txt")]) == 2
        err = capsys.readouterr().err
        assert f"{name}: " in err and message in err and "Traceback" not in err


def test_an_unexpected_error_is_one_line_and_status_1(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("seq2seq.cli.translate.load_predictor", broken)
    monkeypatch.delenv("SEQ2SEQ_DEBUG", raising=False)
    assert translate_main(["--checkpoint", str(tmp_path / "any.pt")]) == 1
    assert capsys.readouterr().err == ("error: unexpected ZeroDivisionError: division by zero "
                                       "(SEQ2SEQ_DEBUG=1 shows where)\n")
    monkeypatch.setenv("SEQ2SEQ_DEBUG", "1")
    assert translate_main(["--checkpoint", str(tmp_path / "any.pt")]) == 1
    assert "Traceback" in capsys.readouterr().err
