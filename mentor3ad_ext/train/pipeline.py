"""End-to-end runs: train (and evaluate) per class, evaluate saved checkpoints.

These are what ``mentor3ad train``, ``mentor3ad eval`` and ``mentor3ad demo`` call; they are
plain functions so that Python users get the same behaviour::

    from mentor3ad_ext.train import TrainRun, run_training
    results = run_training(TrainRun(data="synthetic", out="runs/demo", config="mentor3ad"))

Everything that can be checked before work starts is checked first (dataset, classes, weight
files, config, checkpoint compatibility), and the output folder is created only afterwards, so
bad input leaves nothing behind.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..models.config import MAPS, Mentor3ADConfig, load_config
from ..models.extractors import build_extractors, extractor_identity
from ..models.mentor3ad import Mentor3AD
from .checkpoint import (CheckpointError, check_compatible, checkpoint_config, load_checkpoint,
                         save_checkpoint)
from .distributed import DistContext
from .evaluate import evaluate_predictions, evaluate_variants, vote_variants
from .features import (FeatureCache, SampleFeatures, extract_features, grid_rows,
                       predict_features)
from .trainer import train_heads

DATASETS = ("mvtec3d", "eyecandies")


@dataclass
class TrainRun:
    """Arguments of `run_training` / `run_evaluation` (the CLI flags, as data)."""

    data: str | os.PathLike
    out: str | os.PathLike
    dataset: str = "mvtec3d"
    classes: Sequence[str] | None = None
    config: str | Mentor3ADConfig | dict | None = "mentor3ad"
    rgb_weights: str | None = None
    pointmae_weights: str | None = None
    random_init: bool = False
    ops: str = "fast"
    device: str | None = None
    resume: bool = False
    evaluate: bool = True
    cache_dir: str | os.PathLike | None = None     # feature cache (None: default folder)
    use_cache: bool = True
    preprocess_cache: bool = True
    extract_batch_size: int = 4
    overlays: int = 3               # best/worst overlays per class in the report (0: none)
    variants: bool = True           # also evaluate the vote variants of the trained model
    progress: bool = True
    extractors: tuple | None = None  # (rgb, xyz) extractor modules to use (tests, API)
    log: Callable[[str], None] | None = None
    extra_configs: Sequence[str | Mentor3ADConfig] = field(default_factory=tuple)


def _log_fn(run: TrainRun):
    return run.log or (lambda msg: print(msg, file=sys.stderr, flush=True))


def open_datasets(run: TrainRun, splits=("train", "validation", "test")):
    """Check the dataset and classes; return ``(classes, {class: {split: dataset}})``."""
    from ..data import EyecandiesDataset, MVTec3DDataset
    from ..data.errors import DatasetError

    if run.dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {run.dataset!r}")
    root = Path(run.data)
    if not root.is_dir():
        raise DatasetError(root, "dataset folder not found")
    cls = MVTec3DDataset if run.dataset == "mvtec3d" else EyecandiesDataset
    kwargs = {"cache": run.preprocess_cache}
    probe = cls(root, run.classes, splits[0], **kwargs)
    classes = list(run.classes) if run.classes else sorted({r.class_name for r in probe.records})
    if not classes:
        raise DatasetError(root, "no training samples found")
    out = {}
    for c in classes:
        out[c] = {}
        for split in splits:
            try:
                out[c][split] = cls(root, c, split, **kwargs)
            except DatasetError as err:
                if split == "validation" and "not found" in err.problem:
                    out[c][split] = None  # optional: normal statistics from held-out train images
                else:
                    raise
        if "train" in out[c] and len(out[c]["train"]) == 0:
            raise DatasetError(root / c / "train", "no training samples")
        if "test" in out[c] and len(out[c]["test"]) == 0:
            raise DatasetError(root / c / "test", "no test samples")
    return classes, out


def make_extractors(run: TrainRun, device: torch.device):
    if run.extractors is not None:
        rgb, xyz = run.extractors
    else:
        config = load_config(run.config)
        rgb, xyz = build_extractors(run.rgb_weights, run.pointmae_weights,
                                    random_init=run.random_init, ops=run.ops,
                                    grid_size=config.grid_size, log=_log_fn(run))
    return rgb.to(device), xyz.to(device)


def _normal_split(datasets: dict, train_feats: list, holdout_fraction: float = 0.2):
    """(training features, normal features for the vote statistics)."""
    if datasets.get("validation") is not None and len(datasets["validation"]) > 0:
        return train_feats, None
    n = len(train_feats)
    k = max(1, int(round(n * holdout_fraction))) if n > 1 else 0
    if k == 0:
        return train_feats, train_feats
    return train_feats[: n - k], train_feats[n - k:]


def _fit_vote(model: Mentor3AD, normal: Sequence[SampleFeatures], batch_size: int = 8) -> None:
    from .features import collate_features

    names = [m for m in MAPS if m != "mentor" or model.config.use_mentor]
    smoothed = {n: [] for n in names}
    valid = []
    model.heads.eval()
    for s in range(0, len(normal), batch_size):
        batch, raws = collate_features(normal[s:s + batch_size])
        f_r, f_x, fg = model.grid_features(batch, raws)
        patch = model.heads.patch_maps(f_r, f_x, fg)
        v = batch["valid"].to(f_r.device)
        for n, m in model.heads.vm.candidate_maps(patch, v, names).items():
            smoothed[n].append(m.cpu())
        valid.append(v.cpu())
    model.heads.vm.fit(smoothed, valid)


def run_training(run: TrainRun, dist_ctx: DistContext | None = None) -> dict:
    """Train one set of heads per class; evaluate on the test split when ``run.evaluate``.

    Returns ``{"classes": {class: {...metrics, "variants": {...}}}, "mean": {...}, ...}``;
    checkpoints go to ``<out>/checkpoints/<class>.pt`` and the report to ``<out>``.
    """
    from .report import write_report

    log = _log_fn(run)
    ctx = dist_ctx or DistContext.from_env(run.device)
    config = load_config(run.config)
    splits = ("train", "validation", "test") if run.evaluate else ("train", "validation")
    classes, datasets = open_datasets(run, splits)
    device = ctx.device
    rgb_ext, xyz_ext = make_extractors(run, device)
    out = Path(run.out)
    ckpt_dir = out / "checkpoints"
    # checkpoint compatibility before any work (resume, or refuse to overwrite another config)
    identity = {"rgb": extractor_identity(rgb_ext), "3d": extractor_identity(xyz_ext)}
    resumes = {}
    for c in classes:
        p = ckpt_dir / f"{c}.pt"
        if p.exists():
            if not run.resume:
                raise CheckpointError(p, "exists; pass --resume to continue it, or choose "
                                         "another --out")
            ck = load_checkpoint(p)
            check_compatible(ck, p, config=config, extractors=identity, class_name=c,
                             ignore_train=True)
            resumes[c] = ck
    cache = FeatureCache(run.cache_dir) if run.use_cache else None
    if ctx.enabled and cache is None:
        raise ValueError("distributed runs share features through the feature cache: "
                         "do not disable it")
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)

    results: dict = {"config": config.to_dict(), "dataset": run.dataset, "data": str(run.data),
                     "ops": run.ops, "extractors": identity, "classes": {},
                     "device": str(device), "world_size": ctx.world_size}
    predictions = {}
    t_start = time.perf_counter()
    for ci, c in enumerate(classes):
        t0 = time.perf_counter()
        tag = f"{c} ({ci + 1}/{len(classes)})"
        feats = {}
        for split in splits:
            ds = datasets[c].get(split)
            if ds is None:
                continue
            feats[split] = _extract_all(ds, (rgb_ext, xyz_ext), cache, ctx, run,
                                        desc=f"{tag} features [{split}]")
        t_feat = time.perf_counter() - t0
        model = Mentor3AD(config, rgb_ext, xyz_ext).to(device)
        train_feats, normal = _normal_split(datasets[c], feats["train"])
        if normal is None:
            normal = feats["validation"]
        rows = grid_rows(model, train_feats, progress=False)
        ck_path = ckpt_dir / f"{c}.pt"
        resume = resumes.get(c)

        def on_checkpoint(state, model=model, c=c, ck_path=ck_path):
            save_checkpoint(ck_path, model=model, class_name=c, optimizer=state["optimizer"],
                            stage=state["stage"], epoch=state["epoch"], rng=state["rng"],
                            history=state["history"])

        t1 = time.perf_counter()
        history = train_heads(model, rows, dist_ctx=ctx, resume=resume, on_checkpoint=on_checkpoint,
                              progress=run.progress, desc=f"{tag} train")
        t_train = time.perf_counter() - t1
        if resume is not None and resume["stage"] == "done":
            model.heads.load_state_dict(resume["heads"])
        else:
            _fit_vote(model, normal)
        entry = {"n_train": len(train_feats), "n_normal_stats": len(normal),
                 "heads_checksum": float(sum(p.detach().double().sum() for p in model.heads.parameters())),
                 "history": history[-1:] if history else [],
                 "time_features_s": round(t_feat, 2), "time_train_s": round(t_train, 2)}
        if run.evaluate and ctx.is_main:
            pred, metrics, variants = evaluate_class(model, feats["test"], run.variants)
            entry.update(metrics)
            if variants:
                entry["variants"] = variants
            predictions[c] = (pred, feats["test"], datasets[c]["test"])
        if ctx.is_main:
            save_checkpoint(ck_path, model=model, class_name=c, stage="done",
                            epoch=len(history), history=history,
                            metrics={k: v for k, v in entry.items() if k != "history"})
        entry["time_total_s"] = round(time.perf_counter() - t0, 2)
        results["classes"][c] = entry
        if ctx.is_main:
            summary = ", ".join(f"{k} {entry[k]:.3f}" for k in ("i_auroc", "p_auroc", "aupro@0.3")
                                if k in entry)
            log(f"{c}: trained in {t_train:.1f}s (features {t_feat:.1f}s)" + (f"; {summary}" if summary else ""))
        ctx.barrier()
    results["time_total_s"] = round(time.perf_counter() - t_start, 2)
    if ctx.is_main and run.evaluate:
        write_report(results, predictions, out, overlays=run.overlays)
    return results


def _extract_all(ds, extractors, cache, ctx: DistContext, run: TrainRun, desc: str):
    feats = extract_features(ds, extractors, batch_size=run.extract_batch_size, cache=cache,
                             rank=ctx.rank, world_size=ctx.world_size, desc=desc,
                             progress=run.progress and ctx.is_main)
    if ctx.enabled:
        ctx.barrier()
        if any(f is None for f in feats):
            feats = extract_features(ds, extractors, cache=cache, progress=False)
        if any(f is None for f in feats):
            raise RuntimeError("features of other ranks are missing from the feature cache "
                               f"({cache.directory}); is it on a shared, writable disk?")
    return feats


def evaluate_class(model: Mentor3AD, test: Sequence[SampleFeatures], variants: bool = True):
    """``(prediction, metrics, variant metrics)`` of one class's test features."""
    pred = predict_features(model, test)
    metrics = evaluate_predictions(pred, test)
    var = {}
    if variants:
        names = [m for m in MAPS if m != "mentor" or model.config.use_mentor]
        full = predict_features(model, test, vm=model.heads.vm.with_vote(
            model.config.replace(maps=tuple(names), vote="soft")))
        var = evaluate_variants(model.heads.vm, full["maps"], test, vote_variants(model.config))
    return pred, metrics, var


def run_evaluation(run: TrainRun, checkpoints: str | os.PathLike,
                   vote: Mentor3ADConfig | None = None) -> dict:
    """Evaluate saved checkpoints (``<dir>/<class>.pt``, or one file) on the test split."""
    from .report import write_report

    log = _log_fn(run)
    ckpts = Path(checkpoints)
    if ckpts.is_file():
        files = {load_checkpoint(ckpts)["class_name"]: ckpts}
    elif ckpts.is_dir():
        files = {p.stem: p for p in sorted(ckpts.glob("*.pt"))}
        if not files:
            raise CheckpointError(ckpts, "no checkpoints (*.pt) in this folder")
    else:
        raise CheckpointError(ckpts, "checkpoint file or folder not found")
    if run.classes:
        missing = [c for c in run.classes if c not in files]
        if missing:
            raise CheckpointError(ckpts, f"no checkpoint for class(es) {missing}; have {sorted(files)}")
        files = {c: files[c] for c in run.classes}
    loaded = {c: load_checkpoint(p) for c, p in files.items()}
    configs = {c: checkpoint_config(ck, files[c]) for c, ck in loaded.items()}
    for c, ck in loaded.items():
        if ck["stage"] != "done":
            raise CheckpointError(files[c], f"training did not finish (stage {ck['stage']}, epoch "
                                            f"{ck['epoch']}); resume it with mentor3ad train --resume")
    run.classes = list(files)
    first = next(iter(configs.values()))
    run.config = first
    classes, datasets = open_datasets(run, ("test",))
    ctx = DistContext.from_env(run.device)
    rgb_ext, xyz_ext = make_extractors(run, ctx.device)
    identity = {"rgb": extractor_identity(rgb_ext), "3d": extractor_identity(xyz_ext)}
    for c, ck in loaded.items():
        check_compatible(ck, files[c], extractors=identity, class_name=c)
        if ck["dims"] != {"rgb": rgb_ext.out_channels, "3d": xyz_ext.out_channels}:
            raise CheckpointError(files[c], f"heads expect feature sizes {ck['dims']}")
    cache = FeatureCache(run.cache_dir) if run.use_cache else None
    Path(run.out).mkdir(parents=True, exist_ok=True)
    results: dict = {"config": first.to_dict(), "dataset": run.dataset, "data": str(run.data),
                     "ops": run.ops, "extractors": identity, "classes": {},
                     "device": str(ctx.device), "checkpoints": str(ckpts)}
    predictions = {}
    for c in classes:
        config = configs[c]
        if vote is not None:
            config = config.replace(**{k: getattr(vote, k) for k in ("maps", "vote", "hard_quantile", "sigma")})
        model = Mentor3AD(config, rgb_ext, xyz_ext).to(ctx.device)
        model.heads.load_state_dict(loaded[c]["heads"])
        model.heads.vm = model.heads.vm.with_vote(config)
        test = extract_features(datasets[c]["test"], (rgb_ext, xyz_ext), cache=cache,
                                batch_size=run.extract_batch_size, progress=run.progress,
                                desc=f"{c} features [test]")
        pred, metrics, variants = evaluate_class(model, test, run.variants)
        entry = dict(metrics)
        if variants:
            entry["variants"] = variants
        results["classes"][c] = entry
        predictions[c] = (pred, test, datasets[c]["test"])
        log(f"{c}: " + ", ".join(f"{k} {entry[k]:.3f}" for k in ("i_auroc", "p_auroc", "aupro@0.3")))
    write_report(results, predictions, Path(run.out), overlays=run.overlays)
    return results
