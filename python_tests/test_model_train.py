"""Training, checkpoints, resume, evaluation and the report on a tiny synthetic dataset."""
import json

import pytest
import torch

from mentor3ad_ext.train import TrainRun, run_evaluation, run_training
from mentor3ad_ext.train.checkpoint import CheckpointError, load_checkpoint
from mentor3ad_ext.train.features import FeatureCache, extract_features

from model_utils import make_synth, patch_extractors, tiny_config


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    return make_synth(root / "data", classes=("cookie",), n_train=5, n_val=1, n_test=1, size=64)


def _run(synth, out, cache, **kw):
    kw.setdefault("config", tiny_config())
    kw.setdefault("extractors", patch_extractors())
    return TrainRun(data=synth, out=out, cache_dir=cache, progress=False, overlays=1,
                    preprocess_cache=False, log=lambda m: None, **kw)


def test_train_evaluate_report(synth, tmp_path):
    res = run_training(_run(synth, tmp_path / "out", tmp_path / "cache"))
    entry = res["classes"]["cookie"]
    for k in ("i_auroc", "p_auroc", "aupro@0.3", "aupro@0.01"):
        assert 0.0 <= entry[k] <= 1.0
    assert set(entry["per_defect"]) == {"dent", "bump", "crack", "stain", "combined"}
    assert {"rgb map", "3d map", "product map", "mentor map", "soft vote", "hard vote",
            "soft vote, all maps"} == set(entry["variants"])
    # the soft vote of the full config is the model's own result
    assert entry["variants"]["soft vote"]["p_auroc"] == pytest.approx(entry["p_auroc"])
    out = tmp_path / "out"
    data = json.loads((out / "results.json").read_text())
    assert data["mean"]["i_auroc"] == pytest.approx(entry["i_auroc"])
    md = (out / "results.md").read_text()
    assert "| cookie |" in md and "AUPRO@0.3" in md and "soft vote" in md
    pngs = sorted((out / "overlays" / "cookie").glob("*.png"))
    assert [p.name.split("_")[0] for p in pngs] == ["best", "worst"]
    from PIL import Image

    assert Image.open(pngs[0]).size == (3 * 224 + 8, 224)  # rgb | gt | map
    ck = load_checkpoint(out / "checkpoints" / "cookie.pt")
    assert ck["stage"] == "done" and ck["class_name"] == "cookie"
    assert ck["config"]["name"] == "mentor3ad" and ck["metrics"]["i_auroc"] == entry["i_auroc"]
    assert ck["extractors"]["rgb"]["name"] == "test_patch_rgb"
    assert bool(ck["heads"]["vm.fitted"])
    assert not list(out.rglob("*.tmp"))  # atomic writes leave no temporaries

    # evaluation of the saved checkpoints reproduces the numbers; a re-vote changes them
    ev = run_evaluation(_run(synth, tmp_path / "eval", tmp_path / "cache"), out / "checkpoints")
    assert ev["classes"]["cookie"]["p_auroc"] == pytest.approx(entry["p_auroc"], abs=1e-6)
    from mentor3ad_ext.models.config import Mentor3ADConfig

    ev3d = run_evaluation(_run(synth, tmp_path / "eval3d", tmp_path / "cache", variants=False),
                          out / "checkpoints", vote=Mentor3ADConfig(maps=("3d",), vote="none"))
    assert ev3d["classes"]["cookie"]["p_auroc"] == pytest.approx(entry["variants"]["3d map"]["p_auroc"], abs=1e-6)


def test_seeded_training_is_deterministic_and_learns(synth, tmp_path):
    cfg = tiny_config(train={"epochs": 6, "mfm_epochs": 4})
    a = run_training(_run(synth, tmp_path / "a", tmp_path / "cache", config=cfg, evaluate=False))
    b = run_training(_run(synth, tmp_path / "b", tmp_path / "cache", config=cfg, evaluate=False))
    ha = load_checkpoint(tmp_path / "a" / "checkpoints" / "cookie.pt")
    hb = load_checkpoint(tmp_path / "b" / "checkpoints" / "cookie.pt")
    for k, v in ha["heads"].items():
        assert torch.equal(v, hb["heads"][k]), k
    hist = ha["history"]
    assert [h["stage"] for h in hist] == ["mfm"] * 4 + ["mgm"] * 6
    assert hist[-1]["rec_3d"] < hist[4]["rec_3d"] and hist[3]["infonce"] < hist[0]["infonce"]
    assert "i_auroc" not in a["classes"]["cookie"] and b["classes"]["cookie"]["n_train"] == 5


def test_resume_continues_where_it_stopped(synth, tmp_path):
    cfg = tiny_config(train={"epochs": 4, "mfm_epochs": 2, "checkpoint_every": 1})
    full = _run(synth, tmp_path / "full", tmp_path / "cache", config=cfg, evaluate=False)
    run_training(full)
    # interrupt a second run after MGM epoch 2, then resume it
    import mentor3ad_ext.train.trainer as trainer

    orig = trainer.train_heads

    class Stop(Exception):
        pass

    def interrupted(model, rows, on_checkpoint=None, **kw):
        def cb(state):
            on_checkpoint(state)
            if state["stage"] == "mgm" and state["epoch"] == 2:
                raise Stop
        return orig(model, rows, on_checkpoint=cb, **kw)

    import mentor3ad_ext.train.pipeline as pipeline

    pipeline.train_heads = interrupted
    try:
        with pytest.raises(Stop):
            run_training(_run(synth, tmp_path / "part", tmp_path / "cache", config=cfg, evaluate=False))
    finally:
        pipeline.train_heads = orig
    ck = load_checkpoint(tmp_path / "part" / "checkpoints" / "cookie.pt")
    assert (ck["stage"], ck["epoch"]) == ("mgm", 2) and ck["optimizer"] is not None
    with pytest.raises(CheckpointError, match="--resume"):
        run_training(_run(synth, tmp_path / "part", tmp_path / "cache", config=cfg, evaluate=False))
    run_training(_run(synth, tmp_path / "part", tmp_path / "cache", config=cfg, evaluate=False,
                      resume=True))
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "cookie.pt")
    b = load_checkpoint(tmp_path / "part" / "checkpoints" / "cookie.pt")
    assert b["stage"] == "done" and len(b["history"]) == len(a["history"]) == 6
    for k, v in a["heads"].items():
        assert torch.allclose(v, b["heads"][k], atol=1e-6), k


def test_checkpoint_from_another_config_is_refused(synth, tmp_path):
    run_training(_run(synth, tmp_path / "o", tmp_path / "cache", evaluate=False))
    with pytest.raises(CheckpointError, match="another config.*mentor_dim: checkpoint 8 vs requested 4"):
        run_training(_run(synth, tmp_path / "o", tmp_path / "cache", evaluate=False, resume=True,
                          config=tiny_config(mentor_dim=4)))
    with pytest.raises(CheckpointError, match="other rgb features"):
        from model_utils import PatchRGB, PatchXYZ

        class OtherRGB(PatchRGB):
            name = "other_rgb"

        run_evaluation(_run(synth, tmp_path / "e", tmp_path / "cache",
                            extractors=(OtherRGB(), PatchXYZ())), tmp_path / "o" / "checkpoints")
    assert not (tmp_path / "e").exists()
    with pytest.raises(CheckpointError, match="not found"):
        run_evaluation(_run(synth, tmp_path / "e", tmp_path / "cache"), tmp_path / "nothing")


def test_cfm_config_trains_without_mentor(synth, tmp_path):
    res = run_training(_run(synth, tmp_path / "cfm", tmp_path / "cache", config=tiny_config("cfm")))
    entry = res["classes"]["cookie"]
    assert "mentor map" not in entry["variants"]
    assert entry["variants"]["product map"]["p_auroc"] == pytest.approx(entry["p_auroc"])
    ck = load_checkpoint(tmp_path / "cfm" / "checkpoints" / "cookie.pt")
    assert not any(k.startswith("mfm.") for k in ck["heads"])
    assert {h["stage"] for h in ck["history"]} == {"mgm"}


def test_feature_cache_hits_and_fp16(synth, tmp_path):
    from mentor3ad_ext.data import MVTec3DDataset

    ds = MVTec3DDataset(synth, "cookie", "train", cache=False)
    rgb, xyz = patch_extractors()
    cache = FeatureCache(tmp_path / "fc")
    first = extract_features(ds, (rgb, xyz), cache=cache, progress=False)
    assert rgb.calls > 0 and cache.hits == 0
    calls = rgb.calls
    again = extract_features(ds, (rgb, xyz), cache=cache, progress=False)
    assert rgb.calls == calls and cache.hits == 2 * len(ds)  # backbones not re-run
    assert again[0].raw_rgb["grid"].dtype == torch.float16
    assert torch.equal(first[1].raw_xyz["grid"], again[1].raw_xyz["grid"])
    # a corrupt entry is rebuilt
    victim = next((tmp_path / "fc").rglob("*.pt"))
    victim.write_bytes(b"garbage")
    extract_features(ds, (rgb, xyz), cache=cache, progress=False)
    assert rgb.calls == calls + 1


def _flip_tensor_byte(path, tensor):
    """Flips one byte inside the stored data of `tensor` (the zip container stays valid)."""
    data = bytearray(path.read_bytes())
    at = data.find(tensor.numpy().tobytes()[:64])
    assert at > 0
    data[at + 100] ^= 0xFF
    path.write_bytes(bytes(data))


def test_files_with_flipped_bits_are_refused_or_rebuilt(tmp_path):
    # torch.load does not check the zip records' CRC-32: a flipped bit loaded as a wrong number.
    from mentor3ad_ext.models.weights import WeightsError, read_checkpoint
    from mentor3ad_ext.train.checkpoint import CHECKPOINT_FORMAT

    w = torch.arange(1000, dtype=torch.float32)
    path = tmp_path / "cookie.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "heads": {"w": w}}, path)
    assert torch.equal(load_checkpoint(path)["heads"]["w"], w)
    _flip_tensor_byte(path, w)
    assert not torch.equal(torch.load(path, weights_only=True)["heads"]["w"], w)  # what torch.load gives
    with pytest.raises(CheckpointError, match=r"cookie.pt: not a readable checkpoint \(DamagedFile: checksum mismatch"):
        load_checkpoint(path)
    with pytest.raises(WeightsError, match=r"cookie.pt: not a readable Point-MAE checkpoint.*checksum mismatch"):
        read_checkpoint(path, "Point-MAE")
    cache = FeatureCache(tmp_path / "fc")
    cache.save("ext", "s0", {"grid": w})
    assert torch.equal(cache.load("ext", "s0")["grid"], w)
    _flip_tensor_byte(cache.path("ext", "s0"), w)
    assert cache.load("ext", "s0") is None and not cache.path("ext", "s0").exists()  # a miss: rebuilt


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_train_evaluate_on_cuda_with_amp(synth, tmp_path):
    # The whole pipeline on the GPU: extractors and the fast ops on CUDA, the heads under autocast
    # (the config's default amp=True), the exact metrics on CUDA. The checkpoint loads on the CPU,
    # and the CPU evaluation of it lands close to the GPU's numbers (autocast changes the last bits).
    import math

    cfg = tiny_config(train={"epochs": 4, "mfm_epochs": 2})
    res = run_training(_run(synth, tmp_path / "gpu", tmp_path / "cache", config=cfg, device="cuda"))
    assert res["device"].startswith("cuda")
    entry = res["classes"]["cookie"]
    for k in ("i_auroc", "p_auroc", "aupro@0.3", "aupro@0.01"):
        assert 0.0 <= entry[k] <= 1.0
    ck = load_checkpoint(tmp_path / "gpu" / "checkpoints" / "cookie.pt")
    assert ck["stage"] == "done" and all(math.isfinite(v) for h in ck["history"] for v in h.values()
                                         if isinstance(v, float))
    ev = run_evaluation(_run(synth, tmp_path / "cpu_eval", tmp_path / "cache", device="cpu"),
                        tmp_path / "gpu" / "checkpoints")
    assert ev["device"] == "cpu"
    assert ev["classes"]["cookie"]["p_auroc"] == pytest.approx(entry["p_auroc"], abs=0.02)

