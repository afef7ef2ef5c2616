"""``mentor3ad demo | train | eval | bench``.

Heavy imports (torch, the model) happen inside the handlers so that ``mentor3ad --help`` stays
fast.  Bad input (dataset, class, weight file, config, checkpoint) prints ``error: ...`` and
exits with status 1 (2 for bad flags), before any output is written.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

# The demo's synthetic set.  Training and vote statistics need enough normal samples to cover
# the normal variation (pose, tilt, where the texture meets the rim): with 10 training and 2
# validation images a single unusual normal image outranked whole defect types.
DEMO_SAMPLES = {"n_train": 40, "n_val": 10, "n_test": 5, "n_test_good": 10}


def _add_common(p: argparse.ArgumentParser, *, config: bool = True) -> None:
    p.add_argument("--data", required=True, help="dataset folder (MVTec 3D-AD layout or Eyecandies)")
    p.add_argument("--dataset", choices=("mvtec3d", "eyecandies"), default="mvtec3d")
    p.add_argument("--classes", nargs="+", help="classes (default: all in the folder)")
    if config:
        p.add_argument("--config", default="mentor3ad",
                       help="preset name (cfm, mentor3ad, ablations: see docs/model.md) or JSON file")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. --set train.epochs=50 --set mentor_dim=64")
    p.add_argument("--rgb-weights", help="DINO ViT-B/8 weights (timm vit_base_patch8_224.dino "
                                         "state dict, .pth/.safetensors, or the original DINO file)")
    p.add_argument("--pointmae-weights", help="Point-MAE pretrain.pth")
    p.add_argument("--random-init", action="store_true",
                   help="use randomly initialised backbones where no weight file is given")
    p.add_argument("--ops", choices=("fast", "reference"), default="fast",
                   help="3D path on the compiled ops (fast) or the plain-torch references")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--cache-dir", help="feature cache folder (default: $MENTOR3AD_FEATURE_CACHE_DIR "
                                       "or ~/.cache/mentor3ad_ext/features)")
    p.add_argument("--no-cache", action="store_true", help="do not cache extracted features")
    p.add_argument("--overlays", type=int, default=3, help="best/worst overlays per class (3)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def configure_train(parser: argparse.ArgumentParser) -> None:
    _add_common(parser)
    parser.add_argument("--out", required=True, help="output folder (checkpoints/, results.*)")
    parser.add_argument("--epochs", type=int, help="shortcut for --set train.epochs=N")
    parser.add_argument("--resume", action="store_true", help="continue the checkpoints in --out")
    parser.add_argument("--no-eval", action="store_true", help="do not evaluate on the test split")
    parser.set_defaults(handler=_run_train)


def configure_eval(parser: argparse.ArgumentParser) -> None:
    _add_common(parser, config=False)
    parser.add_argument("--checkpoints", required=True, help="checkpoint file or folder")
    parser.add_argument("--out", required=True, help="report folder")
    parser.add_argument("--maps", help="re-vote over these maps, e.g. rgb,3d,product,mentor")
    parser.add_argument("--vote", choices=("soft", "hard", "none"), help="re-vote with this rule")
    parser.set_defaults(handler=_run_eval)


def configure_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="mentor3ad_demo", help="output folder (mentor3ad_demo)")
    parser.add_argument("--config", default="demo", help="config preset or JSON file (demo)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data (0)")
    parser.add_argument("--classes", nargs="+", help="synthetic classes (default: cookie dowel foam)")
    parser.add_argument("--n-train", type=int, default=DEMO_SAMPLES["n_train"],
                        help=f"normal training samples per class ({DEMO_SAMPLES['n_train']})")
    parser.add_argument("--n-val", type=int, default=DEMO_SAMPLES["n_val"],
                        help=f"normal validation samples per class, for the vote statistics "
                             f"({DEMO_SAMPLES['n_val']})")
    parser.add_argument("--n-test", type=int, default=DEMO_SAMPLES["n_test"],
                        help=f"test samples per defect type and class ({DEMO_SAMPLES['n_test']})")
    parser.add_argument("--n-test-good", type=int, default=DEMO_SAMPLES["n_test_good"],
                        help=f"normal test samples per class ({DEMO_SAMPLES['n_test_good']})")
    parser.add_argument("--ablations", action="store_true",
                        help="also train CFM and the ablation configs and write ablation.md")
    parser.add_argument("--ops", choices=("fast", "reference"), default="fast")
    parser.add_argument("--device", help="cpu, cuda (default: cuda if available)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier demo in --out")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_run_demo)


def configure_bench(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--model", action="store_true",
                        help="also time the model's 3D feature path, fast vs reference ops")
    parser.set_defaults(handler=_run_bench)


# ---------------------------------------------------------------------------------------------

def _errors():
    from ..data.errors import DatasetError
    from ..models.weights import WeightsError
    from .checkpoint import CheckpointError

    return (DatasetError, WeightsError, CheckpointError, ValueError, ImportError)


def _config(args):
    from ..models.config import apply_overrides, load_config

    config = load_config(args.config)
    over = list(getattr(args, "overrides", []) or [])
    if getattr(args, "epochs", None) is not None:
        over.append(f"train.epochs={args.epochs}")
    return apply_overrides(config, over) if over else config


def _run_guarded(fn, args) -> int:
    try:
        return fn(args)
    except _errors() as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def _run_train(args) -> int:
    return _run_guarded(_train, args)


def _train(args) -> int:
    from .pipeline import TrainRun, run_training
    from .report import format_markdown

    run = TrainRun(data=args.data, out=args.out, dataset=args.dataset, classes=args.classes,
                   config=_config(args), rgb_weights=args.rgb_weights,
                   pointmae_weights=args.pointmae_weights, random_init=args.random_init,
                   ops=args.ops, device=args.device, resume=args.resume,
                   evaluate=not args.no_eval, cache_dir=args.cache_dir,
                   use_cache=not args.no_cache, overlays=args.overlays,
                   progress=not args.quiet)
    results = run_training(run)
    if "mean" in results and int(os.environ.get("RANK", "0")) == 0:
        print(format_markdown(results))
    return 0


def _run_eval(args) -> int:
    return _run_guarded(_eval, args)


def _eval(args) -> int:
    from ..models.config import DEFAULT_VOTE_MAPS, Mentor3ADConfig
    from .pipeline import TrainRun, run_evaluation
    from .report import format_markdown

    vote = None
    if args.maps or args.vote:
        maps = tuple(args.maps.split(",")) if args.maps else DEFAULT_VOTE_MAPS
        rule = args.vote or ("none" if len(maps) == 1 else "soft")
        vote = Mentor3ADConfig(maps=maps, vote=rule)
    run = TrainRun(data=args.data, out=args.out, dataset=args.dataset, classes=args.classes,
                   rgb_weights=args.rgb_weights, pointmae_weights=args.pointmae_weights,
                   random_init=args.random_init, ops=args.ops, device=args.device,
                   cache_dir=args.cache_dir, use_cache=not args.no_cache,
                   overlays=args.overlays, progress=not args.quiet)
    results = run_evaluation(run, args.checkpoints, vote=vote)
    print(format_markdown(results))
    return 0


def _run_demo(args) -> int:
    return _run_guarded(_demo, args)


def _demo(args) -> int:
    from ..data import SynthConfig, generate_synthetic_dataset
    from ..data.synth import DEFAULT_SYNTH_CLASSES
    from .pipeline import TrainRun, run_training
    from .report import format_markdown

    out = Path(args.out)
    config = _config(args)
    classes = tuple(args.classes) if args.classes else DEFAULT_SYNTH_CLASSES
    synth = SynthConfig(classes=classes, seed=args.seed, n_train=args.n_train, n_val=args.n_val,
                        n_test=args.n_test, n_test_good=args.n_test_good)
    marker = out / ".mentor3ad_demo"
    if out.exists() and any(out.iterdir()):
        if not (args.overwrite and marker.exists()):
            raise ValueError(f"{out}: exists and is not empty; pass --overwrite to replace an "
                             "earlier demo, or choose another --out")
        shutil.rmtree(out)
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text("written by mentor3ad demo\n")
    data = out / "data"
    print(f"[1/3] synthetic dataset: {', '.join(classes)} (seed {args.seed}) -> {data}", flush=True)
    generate_synthetic_dataset(data, synth)
    print("[2/3] features, training and evaluation per class", flush=True)
    run = TrainRun(data=data, out=out, classes=list(classes), config=config, ops=args.ops,
                   device=args.device, cache_dir=out / "feature_cache",
                   progress=not args.quiet)
    results = run_training(run)
    if args.ablations:
        _demo_ablations(run, out, results)
    elapsed = time.perf_counter() - t0
    print(f"[3/3] report: {out / 'results.md'}, {out / 'results.json'}, overlays in "
          f"{out / 'overlays'}  ({elapsed:.0f} s in all)", flush=True)
    print()
    print(format_markdown(results))
    return 0


def _demo_ablations(run, out: Path, results: dict) -> None:
    """Train CFM and the ablation configs on the same cached features; write ablation.md."""
    import dataclasses

    from ..models.config import ABLATIONS, get_preset
    from .checkpoint import atomic_write_text
    from .pipeline import run_training
    from .report import metrics_table

    base = run.config
    rows = {f"{base.name} (mentor_dim {base.mentor_dim}, {base.vote} vote)": results["mean"]}
    tweak = {k: getattr(base, k) for k in ("proj_hidden", "proj_dim", "mapper_hidden")}
    # the mentor-size ablations scale with the base (full model: 128 -> 32 and 256)
    dims = {"mentor32": max(1, base.mentor_dim // 4), "mentor256": base.mentor_dim * 2}
    for name in ("cfm",) + ABLATIONS:
        preset = get_preset(name)
        cfg = preset.replace(train=dataclasses.asdict(base.train), **tweak)
        cfg = cfg.replace(mentor_dim=dims.get(name, base.mentor_dim))
        label = f"mentor_dim {cfg.mentor_dim}" if name in dims else name
        sub = dataclasses.replace(run, out=out / "ablations" / name, config=cfg, overlays=0,
                                  variants=False)
        print(f"  ablation {label}", flush=True)
        rows[label] = run_training(sub)["mean"]
    for n, v in results.get("variants", {}).items():
        rows[f"{base.name}: {n}"] = v
    text = "# Ablations (mean over classes)\n\n" + metrics_table(rows, first="config") + "\n"
    atomic_write_text(out / "ablation.md", text)
    print(text)


def _run_bench(args) -> int:
    from .. import bench

    argv = []
    if args.device:
        argv += ["--device", args.device]
    if args.quick:
        argv.append("--quick")
    rc = bench.main(argv)
    if args.model:
        from .bench_model import main as model_main

        rc = rc or model_main(["--device", args.device] if args.device else [])
    return rc
