"""The command line: registration, bad input (exit code != 0, nothing written), train + eval."""
import subprocess
import sys

import pytest

from mentor3ad_ext.cli import main

from model_utils import make_synth


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return make_synth(root / "data", classes=("dowel",), n_train=3, n_val=1, n_test=1, size=48,
                      defects=("dent", "stain"))


def test_commands_are_registered(capsys):
    for cmd in ("demo", "train", "eval", "bench"):
        with pytest.raises(SystemExit) as info:
            main([cmd, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert "usage: mentor3ad " + cmd in out
    with pytest.raises(SystemExit):
        main(["train", "--data", "x", "--out", "y", "--ops", "slow"])
    assert "invalid choice: 'slow'" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--classes", "nosuchclass"], "class folder not found"),
    (["--config", "nosuchpreset"], "neither a preset"),
    (["--set", "mentor_dimm=3"], "unknown config key"),
    (["--pointmae-weights", "missing.pth"], "Point-MAE weight file not found"),
    (["--rgb-weights", "BADFILE"], "not a readable vit_base_patch8_224.dino checkpoint"),
])
def test_train_bad_input_fails_cleanly(synth, tmp_path, capsys, extra, message):
    if "BADFILE" in extra:
        bad = tmp_path / "bad.pth"
        bad.write_bytes(b"\x00garbage")
        extra = [str(bad) if e == "BADFILE" else e for e in extra]
    if "missing.pth" in extra:
        extra = [str(tmp_path / e) if e == "missing.pth" else e for e in extra]
    out = tmp_path / "out"
    rc = main(["train", "--data", str(synth), "--out", str(out), "-q", "--no-cache", *extra])
    assert rc == 1
    err = capsys.readouterr().err
    assert "error:" in err and message in err
    assert not out.exists()  # no partial outputs


def test_not_a_dataset(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = main(["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "-q"])
    assert rc == 1 and "error:" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    rc = main(["eval", "--data", str(tmp_path / "empty"), "--checkpoints", str(tmp_path / "none"),
               "--out", str(tmp_path / "o"), "-q"])
    assert rc == 1 and "checkpoint file or folder not found" in capsys.readouterr().err


def test_train_then_eval_with_weight_free_extractors(synth, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--data", str(synth), "--out", str(out), "-q", "--cache-dir",
               str(tmp_path / "fc"), "--config", "cfm", "--set", "mapper_hidden=32",
               "--epochs", "2", "--overlays", "0"])
    assert rc == 0
    text = capsys.readouterr()
    assert "| dowel |" in text.out and "weight-free" in text.err
    assert (out / "checkpoints" / "dowel.pt").is_file() and (out / "results.json").is_file()
    rc = main(["eval", "--data", str(synth), "--checkpoints", str(out / "checkpoints"), "--out",
               str(tmp_path / "ev"), "-q", "--cache-dir", str(tmp_path / "fc"), "--overlays", "0"])
    assert rc == 0 and "| dowel |" in capsys.readouterr().out
    # a second train into the same folder without --resume is refused, nothing is touched
    before = (out / "checkpoints" / "dowel.pt").stat().st_mtime_ns
    rc = main(["train", "--data", str(synth), "--out", str(out), "-q", "--config", "cfm",
               "--set", "mapper_hidden=32", "--epochs", "2"])
    assert rc == 1 and "--resume" in capsys.readouterr().err
    assert (out / "checkpoints" / "dowel.pt").stat().st_mtime_ns == before
    # evaluating with other 3D features than the checkpoint's is refused
    rc = main(["eval", "--data", str(synth), "--checkpoints", str(out / "checkpoints"), "--out",
               str(tmp_path / "ev2"), "-q", "--random-init", "--no-cache"])
    assert rc == 1 and "other rgb features" in capsys.readouterr().err


def test_demo_refuses_a_foreign_folder(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("precious")
    rc = main(["demo", "--out", str(tmp_path / "mine"), "--overwrite"])
    assert rc == 1 and "not empty" in capsys.readouterr().err
    assert (tmp_path / "mine" / "keep.txt").read_text() == "precious"


def test_demo_rejects_bad_sample_counts_before_writing(tmp_path, capsys):
    rc = main(["demo", "--out", str(tmp_path / "d"), "--n-train", "-1"])
    assert rc == 1 and "n_train must be >= 0, got -1" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "mentor3ad_ext", "demo", "--help"],
                       capture_output=True, text=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    assert r.returncode == 0 and "--out" in r.stdout
