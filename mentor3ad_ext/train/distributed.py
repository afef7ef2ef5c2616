"""Scale-out under ``torchrun``: process group set-up (NCCL on GPUs, gloo on CPU) and helpers.

``torchrun --nproc_per_node N -m mentor3ad_ext train ...`` starts N processes; each reads
RANK / WORLD_SIZE / LOCAL_RANK from the environment (`DistContext.from_env`).  Feature
extraction is sharded over the ranks (each rank fills the shared feature cache with its
samples), training wraps the heads in ``DistributedDataParallel`` and shards every epoch's
batches, and rank 0 alone evaluates and writes checkpoints and reports.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str | None = None) -> "DistContext":
        """Join the process group torchrun describes, or a single-process context."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if world <= 1:
            dev = torch.device(device)
            if dev.type == "cuda" and dev.index is None:
                dev = torch.device("cuda", torch.cuda.current_device())
            return cls(device=dev)
        rank = int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.device(device).type == "cuda":
            torch.cuda.set_device(local_rank)
            dev, backend = torch.device("cuda", local_rank), "nccl"
        else:
            dev, backend = torch.device("cpu"), "gloo"
        here = False
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
            here = True
        return cls(rank=rank, world_size=world, local_rank=local_rank, device=dev,
                   initialized_here=here)

    def barrier(self) -> None:
        if self.enabled:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    def broadcast_object(self, obj):
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_ok(self, ok: bool) -> bool:
        """True when every rank reports ok (so that all ranks stop together on an error)."""
        if not self.enabled:
            return ok
        t = torch.tensor([0 if ok else 1], device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return int(t.item()) == 0

    def close(self) -> None:
        if self.initialized_here and dist.is_initialized():
            dist.destroy_process_group()
