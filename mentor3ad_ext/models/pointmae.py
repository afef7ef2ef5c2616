"""The Point-MAE encoder (Pang et al., ECCV 2022) as used by M3DM and CFM, on our ops.

Grouping is `group_points` (FPS centers, kNN groups relative to their center): 1024 groups of
128 points.  Each group goes through the mini-PointNet (Conv1d 3->128->256, max, concat with
the per-point features -> 512 -> 512 -> 384, max); 12 transformer blocks (dim 384, 6 heads,
MLP ratio 4, qkv without bias) take the group tokens, with the positional MLP 3->128->384 of the
centers added before every block; the outputs of blocks 3, 7 and 11 go through the final
LayerNorm and are concatenated: 1152 features per group.

Module names follow Point-MAE's ``MaskTransformer`` (``encoder.first_conv...``, ``pos_embed``,
``blocks.blocks.<i>...``, ``norm``), so the public ``pretrain.pth`` loads after stripping
``module.`` and ``MAE_encoder.`` (`load_pointmae_state_dict`).
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .weights import WeightsError, check_state_dict, read_checkpoint


class GroupEncoder(nn.Module):
    """Point-MAE's ``Encoder``: a mini-PointNet per group."""

    def __init__(self, encoder_channel: int = 384):
        super().__init__()
        self.encoder_channel = encoder_channel
        self.first_conv = nn.Sequential(nn.Conv1d(3, 128, 1), nn.BatchNorm1d(128),
                                        nn.ReLU(inplace=True), nn.Conv1d(128, 256, 1))
        self.second_conv = nn.Sequential(nn.Conv1d(512, 512, 1), nn.BatchNorm1d(512),
                                         nn.ReLU(inplace=True), nn.Conv1d(512, encoder_channel, 1))

    def forward(self, groups: torch.Tensor) -> torch.Tensor:
        """``(B, G, S, 3)`` -> ``(B, G, C)``."""
        B, G, S, _ = groups.shape
        x = groups.reshape(B * G, S, 3).transpose(1, 2)
        feat = self.first_conv(x)
        glob = feat.amax(dim=2, keepdim=True)
        feat = self.second_conv(torch.cat([glob.expand(-1, -1, S), feat], dim=1))
        return feat.amax(dim=2).reshape(B, G, self.encoder_channel)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TransformerEncoder(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int):
        super().__init__()
        self.blocks = nn.ModuleList([Block(dim, num_heads) for _ in range(depth)])


class PointMAEEncoder(nn.Module):
    """Point-MAE's encoder without masking; returns per-group features ``(B, G, 3 * dim)``."""

    def __init__(self, dim: int = 384, depth: int = 12, num_heads: int = 6,
                 fetch_idx: Sequence[int] = (3, 7, 11)):
        super().__init__()
        if any(not 0 <= i < depth for i in fetch_idx):
            raise ValueError(f"fetch_idx {tuple(fetch_idx)} must be block indices < depth {depth}")
        self.dim, self.fetch_idx = dim, tuple(fetch_idx)
        self.encoder = GroupEncoder(dim)
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dim))
        self.blocks = TransformerEncoder(dim, depth, num_heads)
        self.norm = nn.LayerNorm(dim)
        self.apply(_init_weights)

    @property
    def out_channels(self) -> int:
        return self.dim * len(self.fetch_idx)

    def forward(self, neighborhoods: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        x = self.encoder(neighborhoods)
        pos = self.pos_embed(centers)
        feats = []
        for i, block in enumerate(self.blocks.blocks):
            x = block(x + pos)
            if i in self.fetch_idx:
                feats.append(self.norm(x))
        return torch.cat(feats, dim=-1)


def _init_weights(m: nn.Module) -> None:
    # Point-MAE's init (only matters when running without pretrained weights)
    if isinstance(m, (nn.Linear, nn.Conv1d)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


_IGNORED_PREFIXES = ("MAE_decoder.", "decoder_pos_embed.", "increase_dim.", "mask_token",
                     "cls_token", "cls_pos", "cls_head_finetune.", "loss_func")


def map_pointmae_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys of a Point-MAE checkpoint -> keys of `PointMAEEncoder`.

    Accepts the pretraining checkpoint (``{"base_model": {"module.MAE_encoder.*", ...}}``), a
    fine-tuning one (``{"base_model": {"module.encoder.*", "module.blocks.*", ...}}``), or an
    already mapped state dict.  Decoder and head weights are dropped.
    """
    out = {}
    for key, value in state.items():
        k = key[len("module."):] if key.startswith("module.") else key
        if k.startswith("MAE_encoder."):
            k = k[len("MAE_encoder."):]
        elif k.startswith("base_model."):
            k = k[len("base_model."):]
        if k.startswith(_IGNORED_PREFIXES):
            continue
        out[k] = value
    return out


def load_pointmae_state_dict(model: PointMAEEncoder, path: str | os.PathLike) -> None:
    """Load Point-MAE weights from ``path`` into ``model`` (raises `WeightsError` naming keys)."""
    ckpt = read_checkpoint(path, "Point-MAE")
    state = ckpt
    for key in ("base_model", "model", "state_dict"):
        if isinstance(ckpt, dict) and isinstance(ckpt.get(key), dict):
            state = ckpt[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(path, "does not hold a Point-MAE state dict (expected a dict of "
                                 "tensors, or one under 'base_model')")
    mapped = map_pointmae_keys(state)
    check_state_dict(path, "Point-MAE", model, mapped)
    model.load_state_dict(mapped, strict=True)
