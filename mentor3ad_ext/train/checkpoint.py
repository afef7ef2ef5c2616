"""Checkpoints of the trained heads: written atomically, with the config, extractors and metrics.

A checkpoint is a ``torch.save`` dict (readable with ``weights_only=True``):

==================== =============================================================
format               `CHECKPOINT_FORMAT`
version              package version that wrote it
class_name           the object class the heads belong to
config               ``Mentor3ADConfig.to_dict()``
extractors           ``{"rgb": identity, "3d": identity}`` of the frozen extractors
dims                 ``{"rgb": C_r, "3d": C_x}``
heads                the heads' state dict (standardisation and vote statistics included)
optimizer            the optimizer state (resume), or None
stage, epoch         where training stands: stage in mfm / mgm / joint / done
rng                  torch CPU RNG state and the data-order generator state (resume)
history              per-epoch mean losses
metrics              evaluation results (filled in by ``mentor3ad train``/``eval``)
==================== =============================================================

Writes go to a temporary file in the target folder, then ``os.replace``: a crash never leaves a
half-written checkpoint.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .._atomic import atomic_write
from .._torch_file import DamagedFile, load_verified
from ..models.config import Mentor3ADConfig, VOTE_FIELDS, from_dict

CHECKPOINT_FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not fit the run."""

    def __init__(self, path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")


def atomic_save(obj, path: str | os.PathLike) -> None:
    with atomic_write(path) as fh:
        torch.save(obj, fh)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path, "w") as fh:
        fh.write(text)


def save_checkpoint(path, *, model, class_name: str, optimizer=None, stage: str = "done",
                    epoch: int = 0, rng: dict | None = None, history=None, metrics=None) -> None:
    from .. import __version__

    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": __version__,
        "class_name": class_name,
        "config": model.config.to_dict(),
        "extractors": model.extractor_identity(),
        "dims": {"rgb": model.heads.rgb_dim, "3d": model.heads.xyz_dim},
        "heads": {k: v.detach().cpu() for k, v in model.heads.state_dict().items()},
        "optimizer": (optimizer.state_dict() if hasattr(optimizer, "state_dict") else optimizer),
        "stage": stage,
        "epoch": int(epoch),
        "rng": rng,
        "history": list(history or []),
        "metrics": metrics,
    }
    atomic_save(payload, path)


def load_checkpoint(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "checkpoint not found")
    try:
        ckpt = load_verified(path)
    except Exception as err:  # noqa: BLE001
        # (torch's own messages run for paragraphs and suggest weights_only=False: name the type)
        detail = f"{type(err).__name__}: {err}" if isinstance(err, DamagedFile) else type(err).__name__
        raise CheckpointError(path, f"not a readable checkpoint ({detail})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(path, "not a mentor3ad checkpoint (missing or unknown 'format')")
    return ckpt


def checkpoint_config(ckpt: dict, path) -> Mentor3ADConfig:
    try:
        return from_dict(ckpt["config"])
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(path, f"holds an invalid config: {err}") from None


def check_compatible(ckpt: dict, path, *, config: Mentor3ADConfig | None = None,
                     extractors: dict | None = None, class_name: str | None = None,
                     allow_vote_changes: bool = False, ignore_train: bool = False) -> None:
    """Raise `CheckpointError` when ``ckpt`` was trained with another config/extractors/class."""
    if class_name is not None and ckpt.get("class_name") != class_name:
        raise CheckpointError(path, f"is for class {ckpt.get('class_name')!r}, not {class_name!r}")
    if config is not None:
        saved = checkpoint_config(ckpt, path)
        ignore = ("name",) + (("train",) if ignore_train else ()) + (VOTE_FIELDS if allow_vote_changes else ())
        diff = saved.differences(config, ignore=ignore)
        if diff:
            shown = "; ".join(f"{k}: checkpoint {a!r} vs requested {b!r}" for k, a, b in
                              ((k, *v) for k, v in sorted(diff.items())))
            raise CheckpointError(path, f"was trained with another config ({shown})")
    if extractors is not None:
        saved_ext = ckpt.get("extractors", {})
        for modality in ("rgb", "3d"):
            a, b = saved_ext.get(modality, {}), extractors.get(modality, {})
            if _ext_signature(a) != _ext_signature(b):
                raise CheckpointError(
                    path, f"was trained on other {modality} features ({_describe(a)}) than this run "
                          f"uses ({_describe(b)}); pass the same weight files")


def _ext_signature(identity: dict) -> tuple:
    w = identity.get("weights")
    if isinstance(w, dict):  # the file's size identifies it; paths may move between machines
        w = w.get("size")
    return (identity.get("name"), identity.get("out_channels"), w)


def _describe(identity: dict) -> str:
    w = identity.get("weights")
    if isinstance(w, dict):
        w = w.get("path")
    return f"{identity.get('name')}, {identity.get('out_channels')} channels" + (f", weights {w}" if w else "")
