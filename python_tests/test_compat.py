"""The versions the package supports: torch >= 2.4 and Python >= 3.9 (pyproject.toml).

torch 2.4 infers a custom op's schema from annotation objects it looks up in a table of typing
forms: string annotations (our modules use `from __future__ import annotations`) and builtin
generics (`list[float]`) made every op fail to register, so the package did not import there.
Ops register through ops/_library.custom_op, which resolves them; the tests below keep it so.
Python 3.9 evaluates `str | os.PathLike` outside annotations as an error (the dataset readers
did not import). The whole suite passed on torch 2.4.1 + torchvision 0.19.1 on Python 3.11 and
3.9 on 2026-11-27; CI runs one torch and one Python, so these checks stand in for the others."""
import ast
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


TYPE_NAMES = {"str", "int", "float", "bool", "bytes", "None", "list", "dict", "tuple", "set", "Path", "PathLike",
              "Tensor", "ndarray", "Sequence", "Mapping", "Callable", "Any"}


def _is_type(node) -> bool:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _is_type(node.left) or _is_type(node.right)
    if isinstance(node, ast.Constant):
        return node.value is None
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
    if isinstance(node, ast.Subscript):
        return _is_type(node.value)
    return name in TYPE_NAMES


def test_no_type_unions_evaluated_at_run_time():
    # "X | Y" between types is fine in annotations (strings here) but raises on Python 3.9 where
    # it is evaluated: module-level aliases, isinstance / issubclass arguments, defaults.
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        annotations = {id(n) for node in ast.walk(tree) for n in ast.walk(getattr(node, "annotation", None) or node)
                       if getattr(node, "annotation", None) is not None}
        returns = {id(n) for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                   and node.returns is not None for n in ast.walk(node.returns)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and id(node) not in annotations
                    and id(node) not in returns and _is_type(node.left) and _is_type(node.right)):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert found == [], f"use typing.Union / Optional there (Python 3.9): {found}"
