"""Reading pretrained weight files named by the user, with errors that say what is wrong.

Nothing is downloaded: a backbone gets its weights from a local file (``.pth``/``.pt``/``.bin``
read with ``torch.load(weights_only=True)``, or ``.safetensors``).  A file that is missing, not a
checkpoint, or whose keys or shapes do not match the model raises `WeightsError` naming the
file and the offending keys and shapes.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .._torch_file import load_verified


class WeightsError(ValueError):
    """A weight file is missing, unreadable, or does not match the model."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")


def read_checkpoint(path: str | os.PathLike, what: str):
    """The object stored in a weight file (a state dict or a dict holding one)."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(path, f"{what} weight file not found")
    if not path.is_file():
        raise WeightsError(path, f"{what} weight file is not a file")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:  # pragma: no cover - safetensors comes with timm
            raise WeightsError(path, "reading .safetensors needs the 'safetensors' package") from None
        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # noqa: BLE001 - any decoding failure
            raise WeightsError(path, f"not a readable safetensors file ({err})") from None
    try:
        return load_verified(path)
    except Exception as err:  # noqa: BLE001 - torch raises many types for bad files
        raise WeightsError(path, f"not a readable {what} checkpoint ({type(err).__name__}: "
                                 f"{str(err).splitlines()[0] if str(err) else ''})") from None


def _list(keys, limit: int = 8) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def check_state_dict(path, what: str, model: nn.Module, state: dict[str, torch.Tensor],
                     *, ignore_unexpected=()) -> None:
    """Raise `WeightsError` unless ``state`` has exactly the model's keys with its shapes."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected
                  and not any(k.startswith(p) for p in ignore_unexpected)]
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing keys: {_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_list(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch: {'; '.join(mismatched[:8])}"
                        + (f"; ... ({len(mismatched)} in all)" if len(mismatched) > 8 else ""))
    if problems:
        raise WeightsError(path, f"does not match the {what} model: " + " | ".join(problems))
