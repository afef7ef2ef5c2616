"""Argument contracts of the internal ops (``torch.ops.mentor3ad.*``).

The public ops check what users pass and hand the internal ops exactly what the kernels expect.
But the internal ops are registered with torch.library, so anyone can call them (and
torch.compile replays them): each one states the shapes, dtypes and devices that its kernels
size their reads from, and a wrong call gets a ValueError / TypeError naming the op and the
argument instead of a read past a buffer (a random-argument fuzz of these ops segfaulted in 12
of 22 before). Tensors come back contiguous, ready for `ptr`. Values (lengths, indices) stay
the kernels' business: they clamp lengths and skip indices out of range.

    c = Contract("knn")
    p1 = c.tensor("p1", p1, ("B", "P1", "D"), FLOATS)
    p2 = c.tensor("p2", p2, ("B", "P2", "D"), (p1.dtype,))
    K = c.integer("K", K, 1)
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

FLOATS = (torch.float32, torch.float64)
INT64 = (torch.int64,)
INDEX = (torch.int32, torch.int64)
Dim = Union[str, int]


class Contract:
    def __init__(self, op: str):
        self.op = f"mentor3ad::{op}"
        self._dims: dict[str, tuple[int, str]] = {}
        self._device: Optional[tuple[torch.device, str]] = None

    def __getitem__(self, dim: str) -> int:
        return self._dims[dim][0]

    def _fail(self, exc, msg: str):
        raise exc(f"{self.op}: {msg}")

    def tensor(self, name: str, t, shape: Sequence[Dim], dtypes: Optional[Sequence[torch.dtype]] = FLOATS,
               *, empty_ok: bool = False, cpu: bool = False, contiguous: bool = True) -> torch.Tensor:
        """t checked against `shape` (names bind on first use: the same name must have the same
        size everywhere; ints are fixed sizes), `dtypes` and the device of the op's other
        tensors; `empty_ok`: an empty tensor stands for "none" and skips the shape check; `cpu`:
        the op's kernels read host memory only; `contiguous=False`: returned as it is (for ops
        that read strides)."""
        if not isinstance(t, torch.Tensor):
            self._fail(TypeError, f"{name} must be a tensor, got {type(t).__name__}")
        if dtypes is not None and t.dtype not in dtypes:
            names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
            self._fail(TypeError, f"{name} must have dtype in ({names}), got {str(t.dtype).replace('torch.', '')}")
        if self._device is None:
            self._device = (t.device, name)
        elif t.device != self._device[0]:
            self._fail(ValueError, f"{name} is on {t.device} but {self._device[1]} is on {self._device[0]}")
        if cpu and t.device.type != "cpu":
            self._fail(ValueError, f"{name} must be a CPU tensor (this op runs on the host), got {t.device}")
        if empty_ok and t.numel() == 0:
            return t
        self._shape(name, tuple(t.shape), shape)
        return t.contiguous() if contiguous else t

    def optional(self, name: str, t, shape: Sequence[Dim], dtypes: Optional[Sequence[torch.dtype]] = FLOATS,
                 **kw) -> Optional[torch.Tensor]:
        return None if t is None else self.tensor(name, t, shape, dtypes, **kw)

    def _shape(self, name: str, actual: tuple, shape: Sequence[Dim]) -> None:
        dims = self._dims
        if len(actual) == len(shape):
            for d, n in zip(shape, actual):
                if d.__class__ is str:
                    bound = dims.get(d)
                    if bound is None:
                        dims[d] = (n, name)
                    elif bound[0] != n:
                        break
                elif d != n:
                    break
            else:
                return
        want = "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
        where = next((f"; {d} = {dims[d][0]} from {dims[d][1]}" for d, n in zip(shape, actual)
                      if d.__class__ is str and d in dims and dims[d][0] != n and dims[d][1] != name), "")
        self._fail(ValueError, f"{name} must have shape {want}, got {actual}{where}")

    def host_int32(self, name: str, t: torch.Tensor, host: bool) -> None:
        """int32 neighbour lists are read by the CPU kernels only (`host`: they serve this call)."""
        if t.dtype == torch.int32 and not host:
            self._fail(ValueError, f"{name}: int32 neighbour lists are served by the CPU kernels only")

    def at_least(self, dim: str, minimum: int) -> int:
        """The size bound to `dim`, which must be >= minimum (e.g. points with no coordinates)."""
        size, source = self._dims[dim]
        if size < minimum:
            self._fail(ValueError, f"{source} needs {dim} >= {minimum}, got {size}")
        return size

    def floats(self, name: str, v, n: int) -> list[float]:
        if not isinstance(v, (list, tuple)) or len(v) != n:
            self._fail(ValueError, f"{name} must be {n} numbers, got {v!r}")
        return [float(x) for x in v]

    def integer(self, name: str, v, minimum: int = 0) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            self._fail(TypeError, f"{name} must be an int, got {type(v).__name__}")
        if v < minimum:
            self._fail(ValueError, f"{name} must be >= {minimum}, got {v}")
        return v

    def choice(self, name: str, v, options: Sequence):
        if v not in options:
            self._fail(ValueError, f"{name} must be one of {tuple(options)}, got {v!r}")
        return v
