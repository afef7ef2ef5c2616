"""Model and training configurations as data.

A configuration is a frozen `Mentor3ADConfig` (heads, vote, training); presets are named
configurations (`PRESETS`): ``cfm`` (the Crossmodal Feature Mapping baseline: no mentor, product
map), ``mentor3ad`` (the full model) and the ablations.  Configurations round-trip through plain
dicts / JSON (`to_dict`, `from_dict`, `load_config`), so a checkpoint stores the exact config it
was trained with and a config file is just JSON::

    {"base": "mentor3ad", "mentor_dim": 64, "train": {"epochs": 50}}

``base`` names a preset the file overrides (default ``mentor3ad``).  Unknown keys are errors.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

MAPS = ("rgb", "3d", "product", "mentor")  # the VM's candidate maps
# The maps the full model votes over by default. The product map (CFM's) stays a candidate but
# is left out: it is a function of the rgb and 3d maps, and after normalisation with normal
# statistics its heavy upper tail dominated the mean. On the synthetic set (seeds 0-5) voting
# over rgb, 3d and mentor instead of all four raised P-AUROC by 0.002, AUPRO@0.3 by
# 0.005-0.006 and AUPRO@0.01 by 0.012-0.025 on every seed, I-AUROC unchanged (docs/model.md).
DEFAULT_VOTE_MAPS = ("rgb", "3d", "mentor")
VOTES = ("soft", "hard", "none")
CONDITIONING = ("concat", "film")
DISTANCES = ("l2", "cosine")
SCHEDULES = ("two_stage", "joint")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation of the heads (Adam).

    ``epochs`` is the number of passes of the MGM (or of joint training); ``mfm_epochs`` of
    the MFM's first stage in two-stage training (None: same as ``epochs``).
    """

    epochs: int = 250
    mfm_epochs: int | None = None
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    amp: bool = True                  # autocast on CUDA (bfloat16 where supported); off on CPU
    max_contrastive_patches: int = 1024  # subsample foreground patches for the InfoNCE logits
    checkpoint_every: int = 0         # also checkpoint every N epochs (0: at the end of a stage)

    def __post_init__(self):
        _check_int(self, "epochs", 0)
        if self.mfm_epochs is not None:
            _check_int(self, "mfm_epochs", 0)
        _check_int(self, "batch_size", 1)
        _check_int(self, "max_contrastive_patches", 2)
        _check_int(self, "checkpoint_every", 0)
        if not self.lr > 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"train.weight_decay must be >= 0, got {self.weight_decay}")

    @property
    def stage1_epochs(self) -> int:
        return self.epochs if self.mfm_epochs is None else self.mfm_epochs


@dataclass(frozen=True)
class Mentor3ADConfig:
    """Everything that defines a trained model besides the feature extractors.

    Heads (see `heads`):
        use_mentor: build the MFM and condition the MGM mappers on the mentor (False: CFM).
        proj_hidden, proj_dim: MFM projections phi = LN-Linear(C, proj_hidden)-GELU-Linear(.., proj_dim).
        mentor_dim: size of the mentor feature M = MLP([phi_r ; phi_x]).
        contrastive: train phi_r, phi_x with the patch-wise InfoNCE (off: only the mentor's
            reconstruction objective trains the MFM).
        temperature: InfoNCE temperature.
        mapper_hidden: hidden width of the 3-layer GELU mappers (CFM: 960).
        conditioning: how the mentor enters a mapper: "concat" ([F ; M]) or "film".
        mentor_dropout: probability of zeroing the mentor of a patch while training the MGM.
        stop_gradient: the reconstruction loss does not train the MFM (joint schedule only;
            two-stage training freezes the MFM anyway).
        schedule: "two_stage" (MFM, then MGM) or "joint".
        standardize: standardise every input channel with the training set's statistics.
        distance: per-pixel reconstruction distance of the maps, "l2" (CFM) or "cosine".
    Vote (see `heads.VotingModule`):
        maps: the candidate maps voted over (subset of "rgb", "3d", "product", "mentor";
            default rgb, 3d and mentor, see DEFAULT_VOTE_MAPS).
        vote: "soft" (mean of normalised maps), "hard" (count above the normal 99.5th
            percentile times the mean), or "none" (a single map, e.g. CFM's product).
        hard_quantile: the normal percentile of the hard vote.
        sigma: Gaussian smoothing of every map at image resolution (pixels).
    Grid:
        image_size: side of the input images and of the anomaly maps.
        grid_size: side of the shared patch grid all features are brought to.
    """

    name: str = "mentor3ad"
    use_mentor: bool = True
    proj_hidden: int = 512
    proj_dim: int = 256
    mentor_dim: int = 128
    contrastive: bool = True
    temperature: float = 0.1
    mapper_hidden: int = 960
    conditioning: str = "concat"
    mentor_dropout: float = 0.3
    stop_gradient: bool = True
    schedule: str = "two_stage"
    standardize: bool = True
    distance: str = "l2"
    maps: tuple[str, ...] = DEFAULT_VOTE_MAPS
    vote: str = "soft"
    hard_quantile: float = 0.995
    sigma: float = 4.0
    image_size: int = 224
    grid_size: int = 28
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        object.__setattr__(self, "maps", tuple(self.maps))
        for key in ("proj_hidden", "proj_dim", "mentor_dim", "mapper_hidden", "image_size",
                    "grid_size"):
            _check_int(self, key, 1)
        _check_choice(self, "conditioning", CONDITIONING)
        _check_choice(self, "vote", VOTES)
        _check_choice(self, "distance", DISTANCES)
        _check_choice(self, "schedule", SCHEDULES)
        if not self.maps:
            raise ValueError("maps must name at least one candidate map")
        for m in self.maps:
            if m not in MAPS:
                raise ValueError(f"unknown map {m!r} in maps; choose from {MAPS}")
        if len(set(self.maps)) != len(self.maps):
            raise ValueError(f"maps has duplicates: {self.maps}")
        if "mentor" in self.maps and not self.use_mentor:
            raise ValueError("the 'mentor' map needs use_mentor=True")
        if self.vote == "none" and len(self.maps) != 1:
            raise ValueError(f"vote='none' needs exactly one map, got maps={self.maps}")
        if not 0.0 <= self.mentor_dropout < 1.0:
            raise ValueError(f"mentor_dropout must be in [0, 1), got {self.mentor_dropout}")
        if not 0.5 <= self.hard_quantile < 1.0:
            raise ValueError(f"hard_quantile must be in [0.5, 1), got {self.hard_quantile}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {self.sigma}")
        if self.image_size % self.grid_size:
            raise ValueError(f"grid_size {self.grid_size} must divide image_size {self.image_size}")
        if isinstance(self.train, dict):
            object.__setattr__(self, "train", TrainConfig(**self.train))

    # -- (de)serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["maps"] = list(self.maps)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def replace(self, **changes) -> "Mentor3ADConfig":
        """A copy with ``changes``; ``train`` may be a dict of TrainConfig fields to change."""
        train = changes.pop("train", None)
        if isinstance(train, dict):
            changes["train"] = replace(self.train, **train)
        elif train is not None:
            changes["train"] = train
        return replace(self, **changes)

    def differences(self, other: "Mentor3ADConfig", *, ignore=("train",)) -> dict[str, tuple]:
        """``{field: (self's value, other's value)}`` for the fields that differ."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if k not in ignore and a[k] != b[k]}


def _check_int(obj, key: str, minimum: int) -> None:
    value = getattr(obj, key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{key} must be an int >= {minimum}, got {value!r}")


def _check_choice(obj, key: str, choices) -> None:
    if getattr(obj, key) not in choices:
        raise ValueError(f"{key} must be one of {choices}, got {getattr(obj, key)!r}")


# ---------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------

_MENTOR3AD = Mentor3ADConfig()
PRESETS: dict[str, Mentor3ADConfig] = {
    # CFM (Costanzo et al., CVPR 2024): two cross-modal mappers, map = product of both distances
    "cfm": Mentor3ADConfig(name="cfm", use_mentor=False, contrastive=False, maps=("product",),
                           vote="none"),
    "mentor3ad": _MENTOR3AD,
    # the demo: the full model with heads sized for the low-dimensional weight-free features
    "demo": _MENTOR3AD.replace(name="demo", proj_hidden=128, proj_dim=64, mentor_dim=32,
                               mapper_hidden=256, train={"epochs": 40, "mfm_epochs": 20}),
    # ablations of the full model (one change each)
    "no_contrastive": _MENTOR3AD.replace(name="no_contrastive", contrastive=False),
    "no_vote": _MENTOR3AD.replace(name="no_vote", maps=("product",), vote="none"),
    "hard_vote": _MENTOR3AD.replace(name="hard_vote", vote="hard"),
    "film": _MENTOR3AD.replace(name="film", conditioning="film"),
    "joint": _MENTOR3AD.replace(name="joint", schedule="joint"),
    "mentor32": _MENTOR3AD.replace(name="mentor32", mentor_dim=32),
    "mentor256": _MENTOR3AD.replace(name="mentor256", mentor_dim=256),
    # single-modality maps of the full model
    "rgb_map": _MENTOR3AD.replace(name="rgb_map", maps=("rgb",), vote="none"),
    "3d_map": _MENTOR3AD.replace(name="3d_map", maps=("3d",), vote="none"),
    "mentor_map": _MENTOR3AD.replace(name="mentor_map", maps=("mentor",), vote="none"),
}
ABLATIONS = ("no_contrastive", "no_vote", "hard_vote", "film", "joint", "mentor32", "mentor256")

# Fields that only change how the maps are combined: a trained model can be re-evaluated with
# other values without retraining (the vote ablations and the single-modality maps).
VOTE_FIELDS = ("maps", "vote", "hard_quantile", "sigma")


def from_dict(data: dict[str, Any]) -> Mentor3ADConfig:
    """A config from a dict: a full `to_dict()` output, or ``{"base": preset, **overrides}``."""
    data = dict(data)
    base_name = data.pop("base", None)
    if base_name is None and set(data) >= {f.name for f in fields(Mentor3ADConfig)}:
        base = Mentor3ADConfig()
    else:
        base = get_preset(base_name or "mentor3ad")
    known = {f.name for f in fields(Mentor3ADConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; known: {sorted(known)}")
    train = data.pop("train", None)
    if train is not None:
        if not isinstance(train, dict):
            raise ValueError(f"config key 'train' must be a mapping, got {type(train).__name__}")
        tknown = {f.name for f in fields(TrainConfig)}
        tunknown = sorted(set(train) - tknown)
        if tunknown:
            raise ValueError(f"unknown train config key(s) {tunknown}; known: {sorted(tknown)}")
        data["train"] = train
    if "maps" in data:
        data["maps"] = tuple(data["maps"])
    return base.replace(**data)


def get_preset(name: str) -> Mentor3ADConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown config preset {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def load_config(spec: str | os.PathLike | dict | Mentor3ADConfig | None) -> Mentor3ADConfig:
    """A preset name, a JSON file (see the module docstring), a dict, or a config."""
    if spec is None:
        return PRESETS["mentor3ad"]
    if isinstance(spec, Mentor3ADConfig):
        return spec
    if isinstance(spec, dict):
        return from_dict(spec)
    text = str(spec)
    if text in PRESETS:
        return PRESETS[text]
    path = Path(text)
    if not path.is_file():
        raise ValueError(f"config {text!r} is neither a preset ({', '.join(PRESETS)}) nor a "
                         "JSON file")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read config JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must hold a JSON object")
    try:
        return from_dict(data)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None


def parse_overrides(items) -> dict[str, Any]:
    """``["train.epochs=5", "mentor_dim=64", "maps=rgb,3d"]`` -> a dict for `from_dict`."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} must look like key=value")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value.split(",") if key.strip() == "maps" else value
        if key.strip() == "maps" and isinstance(parsed, str):
            parsed = [parsed]
        target = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[leaf] = parsed
    return out


def apply_overrides(config: Mentor3ADConfig, items) -> Mentor3ADConfig:
    data = config.to_dict()
    over = parse_overrides(items)
    train = {**data.pop("train"), **over.pop("train", {})}
    data.update(over)
    data["train"] = train
    return from_dict(data)
