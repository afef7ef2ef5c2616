"""The ``mentor3ad`` command line (also ``python -m mentor3ad_ext``).

Sub-commands live in their own modules and are listed in `COMMANDS`; each module provides a
``configure(parser)`` function that adds its arguments and sets ``handler=<fn(args) -> int>``
with ``parser.set_defaults``.  To add a command (demo, train, eval, bench, ...), add one line to
`COMMANDS`, or call `register_command` before `main` runs.  Command modules should import heavy
dependencies (torch, the model) inside their handlers, so that ``mentor3ad --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

# name -> (one-line help, "module:function" that configures the sub-command's parser)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("synthetic data, dataset checks and conversion", "mentor3ad_ext.data.cli:configure"),
    "demo": ("synthetic data -> train -> evaluate -> report, in about a minute on a 2-core CPU",
             "mentor3ad_ext.train.cli:configure_demo"),
    "train": ("train Mentor3AD (or CFM, or an ablation) per class, then evaluate",
              "mentor3ad_ext.train.cli:configure_train"),
    "eval": ("evaluate saved checkpoints: metrics table, JSON and overlays",
             "mentor3ad_ext.train.cli:configure_eval"),
    "bench": ("op benchmarks summary (and the model's 3D path with --model)",
              "mentor3ad_ext.train.cli:configure_bench"),
}


def register_command(name: str, help: str,
                     configure: str | Callable[[argparse.ArgumentParser], None]) -> None:
    """Add (or replace) a sub-command; ``configure`` is a callable or a "module:function"."""
    COMMANDS[name] = (help, configure)  # type: ignore[assignment]


def _resolve(target) -> Callable[[argparse.ArgumentParser], None]:
    if callable(target):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="mentor3ad",
        description="Mentor3AD: multimodal (RGB + 3D) industrial anomaly detection.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    sub.required = True
    for name, (help_text, target) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        _resolve(target)(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:  # a command whose configure() set no handler
        parser.print_help(sys.stderr)
        return 2
    from .data.errors import DatasetError

    try:
        return int(handler(args) or 0)
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
