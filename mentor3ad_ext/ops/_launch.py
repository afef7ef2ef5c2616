"""How adapters hand tensors to `_C`: raw addresses, dtype tags, device index and stream."""
from __future__ import annotations

from typing import Optional

import torch

from .._ext import EMULATED_CUDA, lib

# Must match csrc/common/dtype.h.
DTYPE_TAGS = {torch.float32: 0, torch.float64: 1}


def ptr(t: Optional[torch.Tensor]) -> int:
    """Address of a contiguous tensor's data; 0 (nullptr) for None or empty tensors."""
    if t is None or t.numel() == 0:
        return 0
    return t.data_ptr()


def dtype_tag(t: torch.Tensor) -> int:
    return DTYPE_TAGS[t.dtype]


def device_args(t: torch.Tensor) -> tuple[int, int]:
    """(device index, stream) for `_C`: (-1, 0) on CPU, the current torch stream on CUDA.

    Under the CUDA emulator, CPU tensors are handed to the (emulated) CUDA kernels as device 0.
    """
    if t.device.type == "cuda":
        index = t.device.index if t.device.index is not None else torch.cuda.current_device()
        return index, torch.cuda.current_stream(index).cuda_stream
    return (0, 0) if EMULATED_CUDA else (-1, 0)


def host_kernels(t: torch.Tensor) -> bool:
    """Whether `t` is served by the CPU kernels (CPU-only fast paths apply); False on CUDA and
    under the CUDA emulator, where the adapters take their CUDA route."""
    return t.device.type == "cpu" and not EMULATED_CUDA


def workspace(nbytes: int, like: torch.Tensor) -> torch.Tensor:
    """Scratch memory from torch's allocator (kernels never allocate device memory themselves)."""
    return torch.empty(int(nbytes), dtype=torch.uint8, device=like.device)


def C():
    return lib()
