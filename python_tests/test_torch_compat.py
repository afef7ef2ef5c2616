"""The package supports torch >= 2.4 (pyproject.toml). torch 2.4 infers a custom op's schema
from annotation objects it looks up in a table of typing forms: string annotations (our modules
use `from __future__ import annotations`) and builtin generics (`list[float]`) made every op
fail to register, so the package did not import there. Ops register through
ops/_library.custom_op, which resolves them; this keeps it so. (The whole suite passed on torch
2.4.1 + torchvision 0.19.1 on 2026-11-27.)"""
import re
import types
import typing
from pathlib import Path

import torch

import mentor3ad_ext as m
from mentor3ad_ext.ops._library import _typing_form

PACKAGE = Path(m.__file__).resolve().parent


def test_ops_register_through_the_shim():
    direct = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
              if p.name != "_library.py" and re.search(r"torch\.library\.custom_op\(", p.read_text())]
    assert direct == [], f"register with ops._library.custom_op instead: {direct}"


def _registered_ops():
    import importlib
    import pkgutil

    from torch._library.custom_ops import CustomOpDef

    found = {}
    for info in pkgutil.iter_modules([str(PACKAGE / "ops")]):
        module = importlib.import_module(f"mentor3ad_ext.ops.{info.name}")
        found.update({v._name: v for v in vars(module).values() if isinstance(v, CustomOpDef)})
    return found


def test_annotations_are_typing_forms_torch_2_4_knows():
    # What torch 2.4's infer_schema accepts: classes and typing forms, no strings, no list[...].
    assert _typing_form(list[float]) == typing.List[float]
    assert _typing_form(typing.Optional[list[int]]) == typing.Optional[typing.List[int]]
    assert _typing_form(tuple[torch.Tensor, torch.Tensor]) == tuple[torch.Tensor, torch.Tensor]
    ops = _registered_ops()
    assert len(ops) >= 20, sorted(ops)
    for name, op in ops.items():
        for arg, t in op._init_fn.__annotations__.items():
            builtin_generic = isinstance(t, types.GenericAlias) and arg != "return"  # list[float]
            assert not isinstance(t, str) and not builtin_generic, (name, arg, t)
