"""What a benchmark case is, shared by the CLI (`python -m mentor3ad_ext.bench`) and the recorded
pytest-benchmark suite in bench/.

A `Case` is one op at one size on one device. It holds a list of `Impl`s: ours first, then the
in-package reference and the peers. Each Impl is *prepared* once outside any timing (inputs
converted to the peer's native format: numpy arrays, Open3D clouds, ...); preparing returns the
zero-argument callable that is timed. Every Impl carries a `check` that is run on the output of
a first, untimed call: a benchmark of a wrong result must fail, not print a fast number.

Nothing here imports a peer at import time; a missing peer turns into `Impl.unavailable`.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata
from typing import Any, Callable, Dict, List, Optional

import torch

OURS, REFERENCE, PEER = "ours", "reference", "peer"


@dataclasses.dataclass
class Impl:
    """One implementation of a case.

    prepare: builds the timed callable (conversions happen here, outside the timing).
    check:   called with the timed callable's output; raises AssertionError when the result is
             wrong; returns a short description of what it verified (shown in the tables).
    scale:   the reported time is the measured time times `scale` (a slow reference timed on a
             fraction of the work, e.g. fewer FPS rounds; `note` must then say so).
    requires: module names that must import; otherwise the impl is skipped with a note.
    """

    name: str
    role: str
    prepare: Callable[[], Callable[[], Any]]
    check: Callable[[Any], str]
    requires: tuple = ()
    dist: Optional[str] = None  # distribution name for the version, e.g. "faiss-cpu"
    scale: float = 1.0
    note: str = ""

    def unavailable(self) -> Optional[str]:
        """None when runnable, else a human-readable reason (e.g. 'fpsample not installed')."""
        for mod in self.requires:
            try:
                importlib.import_module(mod)
            except Exception as err:  # ImportError, or a peer that fails while loading its libs
                first = str(err).splitlines()[0] if str(err) else type(err).__name__
                return f"{mod} not importable ({first})"
        return None

    @property
    def package(self) -> Optional[str]:
        """The peer's distribution name (None for ours and the in-package references)."""
        return self.dist or (self.requires[0] if self.requires else None)

    def version(self) -> Optional[str]:
        """Installed version of the peer package (None for ours / the references / missing)."""
        name = self.package
        if name is None:
            return None
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
        try:
            return getattr(importlib.import_module(self.requires[0]), "__version__", None)
        except Exception:
            return None


@dataclasses.dataclass
class Case:
    """One op at one size on one device. `impls[0]` is ours."""

    op: str
    name: str
    device: str
    sizes: Dict[str, int]
    impls: List[Impl]
    slow: bool = False
    data: Any = None  # the op's lazily built inputs and cached outputs (tests and debugging)

    @property
    def id(self) -> str:
        return f"{self.op}[{self.name}]-{self.device}"

    def impl(self, name: str) -> Impl:
        for i in self.impls:
            if i.name == name:
                return i
        raise KeyError(f"{self.id} has no implementation {name!r}; it has {[i.name for i in self.impls]}")


# op name -> function(device, quick) -> cases for the CLI table. Ops register in their module
# (mentor3ad_ext/bench/<op>.py) and that module is imported in mentor3ad_ext/bench/__init__.py.
CLI_CASES: Dict[str, Callable[[str, bool], List[Case]]] = {}


def register(op: str):
    """Decorator: register the CLI cases of one op (`quick=True` must stay within seconds)."""

    def deco(fn: Callable[[str, bool], List[Case]]):
        if op in CLI_CASES:
            raise ValueError(f"benchmark cases for {op!r} are registered twice")
        CLI_CASES[op] = fn
        return fn

    return deco


def synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def synced(fn: Callable[[], Any], device: str) -> Callable[[], Any]:
    """fn followed by a device synchronisation, so a timer around it measures the GPU work too.

    Timers call it back to back, so the previous call's trailing sync also empties the queue
    before the next call starts.
    """
    if torch.device(device).type != "cuda":
        return fn

    def run():
        out = fn()
        torch.cuda.synchronize(device)
        return out

    return run


class PointQueryData:
    """Seeded inputs of the neighbour-search cases: N points and Q queries uniform in the unit
    cube (float32; D dimensions when `size` has a D, else 3), as torch tensors on the case's
    device and as numpy arrays for the peers. `size` needs N and Q; subclasses add the op's
    cached outputs."""

    def __init__(self, size, device: str, seed: int):
        self.size, self.device, self.seed = size, device, seed

    @functools.cached_property
    def _cpu(self):
        g = torch.Generator().manual_seed(self.seed)
        D = getattr(self.size, "D", 3)
        points = torch.rand(1, self.size.N, D, generator=g)
        queries = torch.rand(1, self.size.Q, D, generator=g)
        return points, queries

    @functools.cached_property
    def points(self) -> torch.Tensor:
        return self._cpu[0].to(self.device)

    @functools.cached_property
    def queries(self) -> torch.Tensor:
        return self._cpu[1].to(self.device)

    @functools.cached_property
    def points_np(self):
        return self._cpu[0][0].numpy().copy(order="C")

    @functools.cached_property
    def queries_np(self):
        return self._cpu[1][0].numpy().copy(order="C")


def ref_queries(size, device: str, budget: int) -> int:
    """How many queries a brute-force reference runs on: all on CUDA or when Q*N is within
    `budget`, else a prefix (its time is scaled by Q / q and the note says so)."""
    if torch.device(device).type == "cuda" or size.Q * size.N <= budget:
        return size.Q
    return max(64, min(size.Q, budget // size.N))
