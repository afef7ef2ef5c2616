"""Build and threading information that does not need the op adapters."""
from __future__ import annotations

from . import __version__
from ._ext import lib


def build_info() -> dict:
    """Version, compiler, CUDA version and architectures compiled, threads; works unbuilt too."""
    try:
        info = dict(lib().build_info())
        info["extension"] = "built"
    except ImportError as err:
        info = {"version": __version__, "extension": f"not built ({err.__cause__ or err})", "cuda": False,
                "cuda_version": None, "cuda_archs": "", "cuda_devices": 0, "compiler": None, "threads": None}
    info["package_version"] = __version__
    return info


def get_num_threads() -> int:
    """Threads used by the CPU kernels (default: hardware threads or $MENTOR3AD_NUM_THREADS)."""
    return int(lib().get_num_threads())


def set_num_threads(n: int) -> None:
    """Set the CPU kernel threads; n < 1 restores the default."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    lib().set_num_threads(n)
