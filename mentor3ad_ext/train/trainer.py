"""Training the heads of one class on cached features (Adam, fixed seeds, AMP on GPU, resume).

The unit of data is an image: every epoch shuffles the training images (a seeded generator) and
feeds batches of ``batch_size`` images; a batch's rows are the foreground cells of its images.
Two-stage training (default) runs the MFM for ``mfm_epochs`` and then the MGM for ``epochs``
with the MFM frozen; ``schedule="joint"`` trains everything together.  Checkpoints are written
at the end of every stage (and every ``checkpoint_every`` epochs); `train_heads` resumes from
the stage and epoch a checkpoint records, with the same data order and random state.

Under torchrun the heads are wrapped in ``DistributedDataParallel`` and each rank takes every
``world_size``-th batch of the (shared) epoch order; the number of batches is padded to a
multiple of the world size by wrapping around, so every rank steps the same number of times.
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch
from torch import nn

from .distributed import DistContext
from .features import Rows


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _StageLoss(nn.Module):
    """``forward(f_r, f_x) -> (total, parts)`` for one stage, so that DDP can wrap it."""

    def __init__(self, heads, stage: str, generator: torch.Generator):
        super().__init__()
        self.heads, self.stage, self.generator = heads, stage, generator

    def forward(self, f_r, f_x):
        f_r, f_x = self.heads.standardize(f_r, f_x)
        parts = self.heads.losses(f_r, f_x, self.stage, self.generator)
        return sum(parts.values()), parts


def stages_of(config) -> list[tuple[str, int]]:
    if config.schedule == "joint" or not config.use_mentor:
        return [("joint" if config.use_mentor else "mgm", config.train.epochs)]
    return [("mfm", config.train.stage1_epochs), ("mgm", config.train.epochs)]


def _stage_params(heads, stage: str):
    if stage == "mfm":
        return list(heads.mfm.parameters())
    if stage == "mgm":
        return list(heads.mgm.parameters())
    return [p for n, p in heads.named_parameters() if not n.startswith("vm.")]


def _autocast(device: torch.device, enabled: bool):
    if not enabled or device.type != "cuda":
        return nullcontext(), None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return torch.autocast("cuda", dtype=dtype), scaler


def train_heads(model, rows: Rows, *, dist_ctx: DistContext | None = None,
                resume: dict | None = None,
                on_checkpoint: Callable[[dict], None] | None = None,
                log: Callable[[str], None] | None = None, progress: bool = True,
                desc: str = "train") -> list[dict]:
    """Train ``model.heads`` on ``rows``; returns the per-epoch history.

    ``resume`` is a loaded checkpoint (its config must match, see `checkpoint.check_compatible`).
    ``on_checkpoint(state)`` is called (on rank 0) with ``{"stage", "epoch", "optimizer",
    "rng", "history"}`` whenever a checkpoint is due.
    """
    from tqdm import tqdm

    ctx = dist_ctx or DistContext()
    config = model.config
    tc = config.train
    heads = model.heads
    device = heads.rgb_mean.device
    history: list[dict] = []
    start_stage, start_epoch = 0, 0
    stages = stages_of(config)
    gen = torch.Generator().manual_seed(tc.seed)   # data order: the same on every rank
    aug = torch.Generator().manual_seed(tc.seed * 7919 + 1 + ctx.rank)  # subsampling, dropout
    seed_everything(tc.seed)

    if resume is not None:
        heads.load_state_dict(resume["heads"])
        history = list(resume.get("history") or [])
        names = [s for s, _ in stages]
        if resume["stage"] == "done":
            return history
        start_stage = names.index(resume["stage"])
        start_epoch = int(resume["epoch"])
        if resume.get("rng"):
            gen.set_state(resume["rng"]["generator"])
            aug.set_state(resume["rng"]["aug"])
            torch.set_rng_state(resume["rng"]["torch"])
    else:
        # standardisation statistics of all training rows (every rank sees all rows)
        heads.fit_standardization(rows.rgb.to(device), rows.xyz.to(device))

    n_images = rows.n_images
    for si in range(start_stage, len(stages)):
        stage, epochs = stages[si]
        params = _stage_params(heads, stage)
        heads.train()
        loss_mod = _StageLoss(heads, stage, aug)
        if ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            loss_mod = DDP(loss_mod, device_ids=[device.index] if device.type == "cuda" else None,
                           find_unused_parameters=True, broadcast_buffers=True)
        opt = torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)
        e0 = start_epoch if si == start_stage else 0
        if resume is not None and si == start_stage and resume.get("optimizer") and e0 > 0:
            opt.load_state_dict(resume["optimizer"])
        autocast, scaler = _autocast(device, tc.amp)
        bar = tqdm(range(e0, epochs), desc=f"{desc} [{stage}]", unit="ep", leave=False,
                   disable=not progress or not ctx.is_main or epochs == 0)
        for epoch in bar:
            order = torch.randperm(n_images, generator=gen).tolist()
            batches = [order[i:i + tc.batch_size] for i in range(0, n_images, tc.batch_size)]
            if ctx.enabled:
                n = math.ceil(len(batches) / ctx.world_size) * ctx.world_size
                batches = [batches[i % len(batches)] for i in range(n)][ctx.rank::ctx.world_size]
            sums: dict[str, float] = {}
            steps = 0
            for images in batches:
                f_r, f_x = rows.of_images(images)
                f_r, f_x = f_r.to(device, non_blocking=True), f_x.to(device, non_blocking=True)
                opt.zero_grad(set_to_none=True)
                with autocast:
                    total, parts = loss_mod(f_r, f_x)
                if scaler is not None:
                    scaler.scale(total).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    total.backward()
                    opt.step()
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                steps += 1
            record = {"stage": stage, "epoch": epoch + 1,
                      **{k: v / max(steps, 1) for k, v in sums.items()}}
            history.append(record)
            if ctx.is_main and progress:
                bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if k not in ("stage", "epoch")})
            last = epoch + 1 == epochs
            due = tc.checkpoint_every and (epoch + 1) % tc.checkpoint_every == 0
            if on_checkpoint is not None and ctx.is_main and (due and not last):
                on_checkpoint({"stage": stage, "epoch": epoch + 1, "optimizer": opt.state_dict(),
                               "rng": _rng_state(gen, aug),
                               "history": history})
        bar.close()
        if on_checkpoint is not None and ctx.is_main and si + 1 < len(stages):
            # stage finished: the next stage starts at epoch 0 with a fresh optimizer
            on_checkpoint({"stage": stages[si + 1][0], "epoch": 0, "optimizer": None,
                           "rng": _rng_state(gen, aug),
                           "history": history})
    heads.eval()
    return history


def _rng_state(gen: torch.Generator, aug: torch.Generator) -> dict:
    return {"generator": gen.get_state(), "aug": aug.get_state(), "torch": torch.get_rng_state()}
