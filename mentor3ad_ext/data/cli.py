"""``mentor3ad data ...``: synthetic data, dataset checks and Eyecandies conversion.

Heavy imports happen inside the handlers so that ``mentor3ad --help`` stays fast.
"""
from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``data`` sub-commands to ``parser`` (the parser of ``mentor3ad data``)."""
    from .synth import DEFAULT_SYNTH_CLASSES, DEFECT_TYPES, SYNTH_CLASSES

    sub = parser.add_subparsers(dest="data_command", metavar="{synth,check,convert-eyecandies}")
    sub.required = True

    synth = sub.add_parser(
        "synth", help="write a synthetic dataset in the MVTec 3D-AD layout",
        description="Write procedural objects on a support plane with planted defects "
                    "(geometric: dent, bump, crack; colour: stain; both: combined) and exact "
                    "gt masks, in the MVTec 3D-AD layout.  Deterministic for a seed.")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--classes", nargs="+", choices=SYNTH_CLASSES,
                       help=f"object classes (default: {' '.join(DEFAULT_SYNTH_CLASSES)})")
    synth.add_argument("--n-train", type=int, help="normal training samples per class (10)")
    synth.add_argument("--n-val", type=int, help="normal validation samples per class (2)")
    synth.add_argument("--n-test", type=int, help="test samples per defect type and class (3)")
    synth.add_argument("--n-test-good", type=int,
                       help="normal test samples per class (default: --n-test)")
    synth.add_argument("--defects", nargs="+", choices=DEFECT_TYPES,
                       help="defect types (default: all)")
    synth.add_argument("--size", type=int, help="image side in pixels (256)")
    synth.add_argument("--seed", type=int, help="random seed (0)")
    synth.add_argument("--overwrite", action="store_true",
                       help="replace class folders previously written by this generator")
    synth.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    synth.set_defaults(handler=_run_synth)

    check = sub.add_parser(
        "check", help="validate a dataset folder",
        description="Read every sample of a dataset (MVTec 3D-AD layout or the original "
                    "Eyecandies release) and report counts, sizes and every problem with its "
                    "file.  Exits with status 1 when a problem is found.")
    check.add_argument("root", help="dataset folder (holding one folder per class)")
    check.add_argument("--classes", nargs="+", help="classes to check (default: all)")
    check.add_argument("--lenient-gt", action="store_true",
                       help="accept gt masks with values in 1..127 (threshold at > 127)")
    check.add_argument("--workers", type=int, default=1, help="reader threads (1)")
    check.set_defaults(handler=_run_check)

    convert = sub.add_parser(
        "convert-eyecandies", help="convert the original Eyecandies release to the MVTec layout",
        description="Back-project Eyecandies depth maps to organized xyz TIFFs and write rgb "
                    "(image_4), xyz and gt in the MVTec 3D-AD layout.")
    convert.add_argument("src", help="the original Eyecandies folder")
    convert.add_argument("dst", help="output folder")
    convert.add_argument("--classes", nargs="+", help="classes to convert (default: all)")
    convert.set_defaults(handler=_run_convert)


def _run_synth(args: argparse.Namespace) -> int:
    from .synth import generate_synthetic_dataset, synth_config_from

    try:
        config = synth_config_from(args.classes, n_train=args.n_train, n_val=args.n_val,
                                   n_test=args.n_test, n_test_good=args.n_test_good,
                                   defects=args.defects, size=args.size, seed=args.seed)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    progress = None if args.quiet else print
    summary = generate_synthetic_dataset(args.out, config, overwrite=args.overwrite,
                                         progress=progress)
    total = sum(sum(c.values()) for c in summary.values())
    print(f"wrote {total} samples of {len(summary)} class(es) to {args.out}")
    return 0


def _run_check(args: argparse.Namespace) -> int:
    from .check import check_dataset

    report = check_dataset(args.root, args.classes, strict_gt=not args.lenient_gt,
                           workers=args.workers)
    print(report.format())
    return 0 if report.ok else 1


def _run_convert(args: argparse.Namespace) -> int:
    from .eyecandies import convert_eyecandies

    counts = convert_eyecandies(args.src, args.dst, args.classes)
    for cls, n in counts.items():
        print(f"{cls}: {n} samples")
    print(f"wrote {sum(counts.values())} samples to {args.dst}")
    return 0
