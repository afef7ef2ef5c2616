"""Lazy access to the compiled `_C` extension.

`import mentor3ad_ext` must work on a machine where the extension was never built (docs, data
tools, the pure-torch references); only the first call into a fast op needs `_C`.
"""
from __future__ import annotations

import functools
import os

# Test mode: run the CUDA kernels under the host emulator (tools/cuda_emu) on CPU tensors.
EMULATED_CUDA = os.environ.get("MENTOR3AD_CUDA_EMULATOR") == "1"

BUILD_HINT = (
    "mentor3ad_ext._C (the compiled extension) is not available: {err}\n"
    "Build it from the source tree with `pip install -e .` (needs a C++17 compiler; CUDA is "
    "used when nvcc is found, MENTOR3AD_CUDA=0 builds CPU-only), or use the pure-torch "
    "references in mentor3ad_ext.reference."
)


@functools.lru_cache(maxsize=None)
def lib():
    """Return the `_C` module, raising an ImportError that says how to build it."""
    if EMULATED_CUDA:
        try:
            from . import _C_emu  # type: ignore[attr-defined]
        except ImportError as err:
            raise ImportError(
                f"MENTOR3AD_CUDA_EMULATOR=1 but mentor3ad_ext._C_emu is not built ({err}): run "
                "`bash tools/cuda_emu/build.sh`"
            ) from err
        return _C_emu
    try:
        from . import _C  # type: ignore[attr-defined]
    except ImportError as err:  # pragma: no cover - exercised in a fresh checkout only
        raise ImportError(BUILD_HINT.format(err=err)) from err
    return _C


def available() -> bool:
    try:
        lib()
    except ImportError:
        return False
    return True
