"""End-to-end speed of the model's 3D feature path: ``--ops fast`` against ``--ops reference``.

``python -m mentor3ad_ext.train.bench_model`` (or ``mentor3ad bench --model``) renders a small
synthetic set and times, per image, with the same inputs for both op sets:

* grouping (FPS + kNN, Point-MAE's 1024 x 128 groups) -> ``group_points``;
* interpolation + projection of the 1152 group features to the 28 x 28 grid
  (3-NN inverse squared distance over all valid pixels, pooled) -> ``interpolate_to_grid``;
* the Point-MAE encoder between them (random weights: the speed does not depend on them;
  the same for both op sets, reported separately);
* one training epoch on cached features (the interpolation runs from the cache, then one MGM
  pass of the full-size heads), as ``mentor3ad train`` does it.

Outputs are checked to agree between the op sets before anything is timed.  Peak memory is
the peak RSS of the step on CPU (``/proc/self/clear_refs``) and ``max_memory_allocated`` on GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def _peak_mb(device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _timed(fn, device, repeat: int):
    fn()  # warm-up and lazy init
    times = []
    _reset_peak(device)
    for _ in range(repeat):
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times), _peak_mb(device)


def run(device: str | None = None, n_images: int = 4, repeat: int = 3, data: str | None = None,
        epoch: bool = True) -> dict:
    from .. import __version__
    from ..data import MVTec3DDataset, SynthConfig, collate_samples, generate_synthetic_dataset
    from ..models.config import get_preset
    from ..models.extractors import PointMAEExtractor
    from ..models.mentor3ad import Mentor3AD
    from .features import SampleFeatures, grid_rows
    from .trainer import train_heads

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tmp = None
    if data is None:
        tmp = tempfile.TemporaryDirectory(prefix="m3bench-")
        data = os.path.join(tmp.name, "data")
        generate_synthetic_dataset(data, SynthConfig(classes=("cookie",), n_train=n_images,
                                                     n_val=0, n_test=0))
    ds = MVTec3DDataset(data, None, "train", cache=False)
    samples = [ds[i] for i in range(min(n_images, len(ds)))]
    batch = collate_samples(samples)
    batch = {k: (v.to(dev) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    torch.manual_seed(0)
    fast = PointMAEExtractor(random_init=True).to(dev)
    ref = PointMAEExtractor(random_init=True, ops="reference").to(dev)
    ref.load_state_dict(fast.state_dict())
    B = len(samples)
    res: dict = {"device": str(dev), "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda"
                 else (os.uname().machine + f", {os.cpu_count()} cores"),
                 "torch": torch.__version__, "mentor3ad_ext": __version__, "images": B,
                 "points_per_image": batch["valid"].flatten(1).sum(1).tolist(), "steps": {}}

    raws = {}
    for name, ext in (("fast", fast), ("reference", ref)):
        def group(ext=ext):
            return ext.extract_raw(batch)
        raws[name], t, peak = _timed(group, dev, repeat)
        res["steps"].setdefault("grouping + encoder", {})[name] = {"s_per_image": t / B, "peak_mb": peak}
    for a, b in zip(raws["fast"], raws["reference"]):
        assert torch.equal(a["centers"], b["centers"]), "fast and reference grouping disagree"
    xyz = batch["xyz"].float()
    flat = xyz.flatten(2).transpose(1, 2)
    order = torch.argsort((~batch["valid"].flatten(1)).to(torch.uint8), dim=1, stable=True)
    P = int(batch["valid"].flatten(1).sum(1).max())
    pts = flat.gather(1, order[:, :P, None].expand(-1, -1, 3)).contiguous()
    lengths = batch["valid"].flatten(1).sum(1)
    for name, ext in (("fast", fast), ("reference", ref)):
        def grouping_only(ext=ext):
            return ext.ops.group_points(pts, 1024, 128, lengths)
        _, t, peak = _timed(grouping_only, dev, repeat)
        res["steps"].setdefault("grouping", {})[name] = {"s_per_image": t / B, "peak_mb": peak}
    grids = {}
    for name, ext in (("fast", fast), ("reference", ref)):
        def interp(ext=ext):
            return ext.raw_to_grid(raws["fast"], batch)
        grids[name], t, peak = _timed(interp, dev, repeat)
        res["steps"].setdefault("interpolation + projection", {})[name] = {"s_per_image": t / B, "peak_mb": peak}
    assert torch.allclose(grids["fast"], grids["reference"], atol=1e-3, rtol=1e-3), \
        "fast and reference interpolation disagree"
    for step in res["steps"].values():
        step["speedup"] = step["reference"]["s_per_image"] / step["fast"]["s_per_image"]
    g, i = res["steps"]["grouping"], res["steps"]["interpolation + projection"]
    path_f = g["fast"]["s_per_image"] + i["fast"]["s_per_image"]
    path_r = g["reference"]["s_per_image"] + i["reference"]["s_per_image"]
    res["3d_path"] = {"fast_s_per_image": path_f, "reference_s_per_image": path_r,
                      "speedup": path_r / path_f}
    enc = res["steps"]["grouping + encoder"]["fast"]["s_per_image"] - g["fast"]["s_per_image"]
    res["encoder_s_per_image"] = enc
    res["extraction_images_per_s"] = {
        k: 1.0 / res["steps"]["grouping + encoder"][k]["s_per_image"] for k in ("fast", "reference")}

    if epoch:
        from ..models.extractors import HandcraftedRGBExtractor

        rgb = HandcraftedRGBExtractor().to(dev)
        cfg = get_preset("mentor3ad").replace(train={"epochs": 1, "mfm_epochs": 0})
        feats = [SampleFeatures(raw_rgb={"grid": rgb({"rgb": s["rgb"][None].to(dev)})[0].half().cpu()},
                                raw_xyz=r, xyz=s["xyz"], valid=s["valid"], gt=s["gt"], label=0,
                                defect="good", sample_id=s["sample_id"], path=s["path"], index=j)
                 for j, (s, r) in enumerate(zip(samples, raws["fast"]))]
        for name, ext in (("fast", fast), ("reference", ref)):
            model = Mentor3AD(cfg, rgb, ext).to(dev)

            def one_epoch(model=model):
                rows = grid_rows(model, feats, batch_size=4)
                return train_heads(model, rows, progress=False)
            _, t, peak = _timed(one_epoch, dev, max(1, repeat - 1))
            res.setdefault("epoch", {})[name] = {"s": t, "peak_mb": peak}
        res["epoch"]["speedup"] = res["epoch"]["reference"]["s"] / res["epoch"]["fast"]["s"]
    if tmp is not None:
        tmp.cleanup()
    return res


def format_table(res: dict) -> str:
    lines = [f"Model 3D path on {res['device_name']} ({res['device']}), {res['images']} synthetic "
             f"images of ~{int(sum(res['points_per_image']) / res['images'])} points; Point-MAE "
             "1024 groups x 128, 1152 features, 28 x 28 grid.", "",
             "| step | fast (ms/image) | reference (ms/image) | speed-up | peak MB fast / ref |",
             "|---|---:|---:|---:|---:|"]
    for name, s in res["steps"].items():
        pf, pr = s["fast"]["peak_mb"], s["reference"]["peak_mb"]
        peaks = "-" if pf is None else f"{pf:.0f} / {pr:.0f}"
        lines.append(f"| {name} | {1e3 * s['fast']['s_per_image']:.1f} | "
                     f"{1e3 * s['reference']['s_per_image']:.1f} | {s['speedup']:.1f}x | {peaks} |")
    p = res["3d_path"]
    lines.append(f"| **3D path (grouping + interpolation + projection)** | "
                 f"{1e3 * p['fast_s_per_image']:.1f} | {1e3 * p['reference_s_per_image']:.1f} | "
                 f"**{p['speedup']:.1f}x** | |")
    if "epoch" in res:
        e = res["epoch"]
        lines.append(f"| epoch on cached features ({res['images']} images, s) | {e['fast']['s']:.2f} | "
                     f"{e['reference']['s']:.2f} | {e['speedup']:.1f}x | "
                     f"{e['fast']['peak_mb'] or 0:.0f} / {e['reference']['peak_mb'] or 0:.0f} |")
    lines.append("")
    lines.append("Feature extraction: " + ", ".join(
        f"{k} {v:.2f} images/s" for k, v in res["extraction_images_per_s"].items())
        + f" (encoder alone {1e3 * res['encoder_s_per_image']:.0f} ms/image).")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mentor3ad_ext.train.bench_model", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    res = run(args.device, args.images, args.repeat)
    print(format_table(res))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
