"""`custom_op`: torch.library.custom_op for every torch this package supports (>= 2.4).

The op modules use `from __future__ import annotations`, so their annotations are strings, and
write builtin generics (`list[float]`). torch >= 2.5 resolves both when it infers an op's schema;
torch 2.4 looks the annotation objects up in a table of typing forms and refused every op
("Parameter points has unsupported type torch.Tensor"): the package did not import there. The
annotations are resolved and spelled as typing forms before torch sees them.
"""
from __future__ import annotations

import typing

import torch


def _typing_form(t):
    """list[X] -> typing.List[X], recursively (Optional[...] and tuple[...] are kept)."""
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is list:
        return typing.List[_typing_form(args[0])]  # noqa: UP006 - torch 2.4 matches typing.List
    if origin is typing.Union:
        return typing.Union[tuple(_typing_form(a) for a in args)]
    return t


def custom_op(name: str, *, mutates_args=(), device_types=None):
    def register(fn):
        fn.__annotations__ = {k: _typing_form(v) for k, v in typing.get_type_hints(fn).items()}
        return torch.library.custom_op(name, fn, mutates_args=mutates_args, device_types=device_types)
    return register
