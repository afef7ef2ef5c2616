"""A synthetic dataset in the MVTec 3D-AD layout, with planted defects and exact masks.

The scene imitates MVTec 3D-AD at a smaller scale: a pinhole camera about 0.4 m above a dark
support plane (slightly tilted), one object of a few centimetres on it, the organized cloud in
the camera frame in metres, holes (0, 0, 0) where the surface is too steep to be measured (object
silhouettes), and a little depth and colour noise.

Rendering is exact per pixel: every pixel's ray meets the support plane at ``(X, Y)``; the
object is a height field ``h(X, Y)`` over the plane, so the surface point is the ray point at
depth ``Z_plane - h``.  (Height is measured along the optical axis; with a plane tilted by < 2
degrees the difference to the plane normal is negligible.)  Colour is the object's albedo,
shaded by the normals of the *defect-free* shape, so:

* geometric defects (``dent``, ``bump``, ``crack``) change xyz but not a single rgb value;
* colour defects (``stain``) change rgb but not a single xyz value;
* ``combined`` is a dent with a stain on it, visible in both.

The gt mask of a geometric defect is where it moves the surface by at least 10 % of its depth;
of a stain, the stain's area.  Masks are computed on the same pixel grid as the images, so they
are exact.  Normal samples vary only mildly (pose jitter of a few mm and degrees, scale +-3 %,
texture phases, sensor noise), so that defects are clearly the largest deviation.

Deterministic: a sample depends only on (seed, class, split, defect type, index), so adding
samples or classes never changes the existing ones.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import zlib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .errors import DatasetError
from .io import write_gt, write_rgb, write_xyz

DEFECT_TYPES = ("dent", "bump", "crack", "stain", "combined")
GEOMETRIC_DEFECTS = ("dent", "bump", "crack")
COLOUR_DEFECTS = ("stain",)
MARKER_FILE = ".mentor3ad_synth.json"
MASK_FRACTION = 0.1  # a geometric defect's mask: |displacement| >= 10 % of its depth

MM = 1e-3


# ---------------------------------------------------------------------------------------------
# Procedural texture helpers
# ---------------------------------------------------------------------------------------------

def _waves(rng: np.random.Generator, n: int, wavelength: tuple[float, float]) -> np.ndarray:
    """Parameters (kx, ky, phase) of ``n`` plane waves with wavelengths in the given range."""
    lam = rng.uniform(*wavelength, size=n)
    ang = rng.uniform(0, math.pi, size=n)
    k = 2 * math.pi / lam
    return np.stack([k * np.cos(ang), k * np.sin(ang), rng.uniform(0, 2 * math.pi, n)], axis=1)


def _wave_noise(x: np.ndarray, y: np.ndarray, waves: np.ndarray) -> np.ndarray:
    """Smooth noise with standard deviation 1: the sum of the waves' sines, rescaled."""
    out = np.zeros_like(x)
    for kx, ky, phase in waves:
        out += np.sin(kx * x + ky * y + phase)
    return out * (math.sqrt(2.0 / len(waves)))


def _discs(x: np.ndarray, y: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    hit = np.zeros(x.shape, dtype=bool)
    for (cx, cy), r in zip(centres, radii):
        hit |= (x - cx) ** 2 + (y - cy) ** 2 < r * r
    return hit


# ---------------------------------------------------------------------------------------------
# Object classes.  Coordinates are object-local metres on the support plane; heights in metres.
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SynthObject:
    name: str
    height: Callable[[np.ndarray, np.ndarray, dict], np.ndarray]
    albedo: Callable[[np.ndarray, np.ndarray, dict], np.ndarray]
    texture: Callable[[np.random.Generator], dict]
    # (x, y, margin) -> where a defect of radius ``margin`` fits on the top surface
    interior: Callable[[np.ndarray, np.ndarray, float], np.ndarray]
    extent: float            # half-size of a box around the object (defect placement)
    max_rotation: float      # pose jitter, radians
    stain_colour: tuple[float, float, float]
    defect_radius: tuple[float, float] = (4 * MM, 6 * MM)


def _colour(base, x, factor):
    """An (H, W, 3) image of colour ``base`` modulated by ``factor`` (broadcast to ``x``)."""
    factor = np.broadcast_to(factor, x.shape)
    return factor[..., None] * np.asarray(base, dtype=np.float64)


# cookie: a disc 44 mm across and 12 mm thick with a rounded rim, chocolate chips.
_COOKIE_R, _COOKIE_T, _COOKIE_RIM = 22 * MM, 12 * MM, 4 * MM


def _cookie_texture(rng):
    n = 9
    ang, rad = rng.uniform(0, 2 * math.pi, n), _COOKIE_R * 0.85 * np.sqrt(rng.uniform(0, 1, n))
    return {"waves": _waves(rng, 6, (8 * MM, 30 * MM)),
            "relief": _waves(rng, 4, (6 * MM, 15 * MM)),
            "chips": np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1),
            "chip_r": rng.uniform(1.2 * MM, 2.0 * MM, n)}


def _cookie_height(x, y, t):
    r = np.hypot(x, y)
    flat = _COOKIE_R - _COOKIE_RIM
    rim = np.clip((r - flat) / _COOKIE_RIM, 0, 1)
    h = _COOKIE_T * np.sqrt(np.clip(1 - rim ** 2, 0, 1)) + 0.15 * MM * _wave_noise(x, y,
                                                                                t["relief"])
    return np.where(r < _COOKIE_R, h, 0.0)


def _cookie_albedo(x, y, t):
    out = _colour((0.66, 0.45, 0.24), x, 1 + 0.06 * _wave_noise(x, y, t["waves"]))
    out[_discs(x, y, t["chips"], t["chip_r"])] = (0.30, 0.18, 0.10)
    return out


COOKIE = SynthObject(
    name="cookie", height=_cookie_height, albedo=_cookie_albedo, texture=_cookie_texture,
    interior=lambda x, y, m: np.hypot(x, y) <= _COOKIE_R - _COOKIE_RIM - m - 1 * MM,
    extent=_COOKIE_R, max_rotation=math.pi, stain_colour=(0.15, 0.45, 0.80))

# dowel: a wooden cylinder 16 mm thick and 56 mm long lying on the plane.
_DOWEL_R, _DOWEL_HALF_L = 8 * MM, 28 * MM


def _dowel_texture(rng):
    return {"grain": rng.uniform(1.2 * MM, 1.8 * MM), "phase": rng.uniform(0, 2 * math.pi),
            "warp": _waves(rng, 3, (15 * MM, 40 * MM))}


def _dowel_height(x, y, t):
    inside = (np.abs(y) < _DOWEL_R) & (np.abs(x) < _DOWEL_HALF_L)
    return np.where(inside, _DOWEL_R + np.sqrt(np.clip(_DOWEL_R ** 2 - y ** 2, 0, None)), 0.0)


def _dowel_albedo(x, y, t):
    grain = np.sin(2 * math.pi * y / t["grain"] + t["phase"] + 1.5 * _wave_noise(x, y, t["warp"]))
    return _colour((0.82, 0.65, 0.42), x, 1 + 0.07 * grain)


DOWEL = SynthObject(
    name="dowel", height=_dowel_height, albedo=_dowel_albedo, texture=_dowel_texture,
    interior=lambda x, y, m: (np.abs(x) <= _DOWEL_HALF_L - m - 2 * MM) & (np.abs(y) <= 2 * MM),
    extent=_DOWEL_HALF_L, max_rotation=math.radians(10), stain_colour=(0.35, 0.10, 0.50),
    defect_radius=(3.5 * MM, 4.5 * MM))

# foam: a 40 x 40 x 15 mm block with a gently bumpy top and a porous look.
_FOAM_HALF, _FOAM_T = 20 * MM, 15 * MM


def _foam_texture(rng):
    n = 14
    return {"bumps": rng.uniform(-_FOAM_HALF, _FOAM_HALF, size=(n, 2)),
            "pores": _waves(rng, 8, (0.8 * MM, 2.5 * MM)),
            "tint": _waves(rng, 4, (10 * MM, 40 * MM))}


def _foam_height(x, y, t):
    bumps = np.zeros_like(x)
    for bx, by in t["bumps"]:
        bumps += np.exp(-((x - bx) ** 2 + (y - by) ** 2) / (2 * (2.5 * MM) ** 2))
    inside = (np.abs(x) < _FOAM_HALF) & (np.abs(y) < _FOAM_HALF)
    return np.where(inside, _FOAM_T + 0.4 * MM * np.minimum(bumps, 1.5), 0.0)


def _foam_albedo(x, y, t):
    return _colour((0.88, 0.82, 0.56), x,
                   1 + 0.05 * _wave_noise(x, y, t["pores"]) + 0.03 * _wave_noise(x, y, t["tint"]))


FOAM = SynthObject(
    name="foam", height=_foam_height, albedo=_foam_albedo, texture=_foam_texture,
    interior=lambda x, y, m: (np.abs(x) <= _FOAM_HALF - m - 1 * MM)
    & (np.abs(y) <= _FOAM_HALF - m - 1 * MM),
    extent=_FOAM_HALF, max_rotation=math.radians(10), stain_colour=(0.70, 0.12, 0.10))

# potato: a half ellipsoid 60 x 40 x 16 mm with darker eyes.
_POT_A, _POT_B, _POT_C = 30 * MM, 20 * MM, 16 * MM


def _potato_texture(rng):
    n = 6
    return {"eyes": rng.uniform(-0.6, 0.6, size=(n, 2)) * (_POT_A, _POT_B),
            "eye_r": rng.uniform(0.8 * MM, 1.5 * MM, n),
            "tint": _waves(rng, 5, (8 * MM, 30 * MM))}


def _potato_height(x, y, t):
    q = 1 - (x / _POT_A) ** 2 - (y / _POT_B) ** 2
    return np.where(q > 0, _POT_C * np.sqrt(np.clip(q, 0, None)), 0.0)


def _potato_albedo(x, y, t):
    out = _colour((0.74, 0.59, 0.36), x, 1 + 0.06 * _wave_noise(x, y, t["tint"]))
    out[_discs(x, y, t["eyes"], t["eye_r"])] = (0.45, 0.33, 0.18)
    return out


POTATO = SynthObject(
    name="potato", height=_potato_height, albedo=_potato_albedo, texture=_potato_texture,
    interior=lambda x, y, m: ((np.abs(x) + m) / _POT_A) ** 2 + ((np.abs(y) + m) / _POT_B) ** 2
    <= 0.45,
    extent=_POT_A, max_rotation=math.radians(15), stain_colour=(0.15, 0.55, 0.20),
    defect_radius=(3.5 * MM, 5 * MM))

SYNTH_OBJECTS = {obj.name: obj for obj in (COOKIE, DOWEL, FOAM, POTATO)}
SYNTH_CLASSES = tuple(SYNTH_OBJECTS)
DEFAULT_SYNTH_CLASSES = ("cookie", "dowel", "foam")


# ---------------------------------------------------------------------------------------------
# Sample specification
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SynthConfig:
    """What `generate_synthetic_dataset` writes.

    ``n_test`` samples per defect type and ``n_test_good`` normal test samples (default: as many
    as ``n_test``) per class.  ``size`` is the image side in pixels; the field of view stays
    ``field_of_view`` metres wide, so a larger size means a finer scan of the same scene.
    """

    classes: tuple[str, ...] = DEFAULT_SYNTH_CLASSES
    n_train: int = 10
    n_val: int = 2
    n_test: int = 3
    n_test_good: int | None = None
    defects: tuple[str, ...] = DEFECT_TYPES
    size: int = 256
    seed: int = 0
    camera_distance: float = 0.40   # metres from the camera to the support plane
    field_of_view: float = 0.08     # metres across the image at that distance
    depth_noise: float = 0.05 * MM  # std of the depth noise
    colour_noise: float = 2.0 / 255
    max_slope: float = 4.0          # steeper surfaces (tan of the angle) are not measured

    def __post_init__(self):
        for name in self.classes:
            if name not in SYNTH_OBJECTS:
                raise ValueError(f"unknown synthetic class {name!r}; choose from {SYNTH_CLASSES}")
        for name in self.defects:
            if name not in DEFECT_TYPES:
                raise ValueError(f"unknown defect type {name!r}; choose from {DEFECT_TYPES}")
        for key in ("n_train", "n_val", "n_test"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.n_test_good is not None and self.n_test_good < 0:
            raise ValueError(f"n_test_good must be >= 0, got {self.n_test_good}")
        if self.size < 16:
            raise ValueError(f"size must be >= 16 pixels, got {self.size}")

    @property
    def focal_length(self) -> float:
        """Focal length in pixels."""
        return self.size * self.camera_distance / self.field_of_view

    @property
    def principal_point(self) -> float:
        return (self.size - 1) / 2.0


@dataclass(frozen=True)
class Pose:
    dx: float = 0.0       # object offset on the plane, metres
    dy: float = 0.0
    angle: float = 0.0    # rotation about the plane normal, radians
    scale: float = 1.0
    tilt_x: float = 0.0   # plane slope dZ/dX and dZ/dY in the camera frame
    tilt_y: float = 0.0
    distance: float = 0.0  # offset of the plane distance, metres


@dataclass(frozen=True)
class Defect:
    kind: str                       # dent, bump, crack, stain
    centre: tuple[float, float]     # object-local metres
    radius: float                   # dent/bump/stain radius; crack half-width
    depth: float = 0.0              # signed displacement towards the camera (dent < 0)
    end: tuple[float, float] | None = None  # crack: second end point (centre is the first)
    shape: tuple[float, ...] = ()   # stain: outline harmonics (amplitude, phase) pairs
    colour: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class SampleSpec:
    """Everything that determines one rendered sample."""

    class_name: str
    pose: Pose
    texture_seed: int
    noise_seed: int
    defects: tuple[Defect, ...] = field(default_factory=tuple)


_SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}


def _sample_seed(seed: int, class_name: str, split: str, defect: str,
                 index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, zlib.crc32(class_name.encode()), _SPLIT_CODES[split],
                                   zlib.crc32(defect.encode()), index])


def _defect_site(obj: SynthObject, rng: np.random.Generator,
                 margin: float) -> tuple[float, float]:
    for _ in range(1000):
        x, y = rng.uniform(-obj.extent, obj.extent, size=2)
        if obj.interior(np.array([x]), np.array([y]), margin)[0]:
            return float(x), float(y)
    raise RuntimeError(f"no room for a defect of radius {margin} on {obj.name}")


def _stain(obj: SynthObject, rng: np.random.Generator, centre, radius) -> Defect:
    shape = tuple(float(v) for k in range(3) for v in (rng.uniform(0.05, 0.12),
                                                        rng.uniform(0, 2 * math.pi)))
    return Defect("stain", centre, radius, shape=shape, colour=obj.stain_colour)


def make_defects(obj: SynthObject, kind: str, rng: np.random.Generator) -> tuple[Defect, ...]:
    """Random defects of type ``kind`` on the top surface of ``obj``."""
    radius = rng.uniform(*obj.defect_radius)
    if kind in ("dent", "bump", "combined"):
        centre = _defect_site(obj, rng, radius)
        depth = rng.uniform(2.0 * MM, 3.0 * MM) * (1 if kind == "bump" else -1)
        dent = Defect("bump" if kind == "bump" else "dent", centre, radius, depth=depth)
        if kind == "combined":
            return (dent, _stain(obj, rng, centre, radius * 0.85))
        return (dent,)
    if kind == "stain":
        return (_stain(obj, rng, _defect_site(obj, rng, radius), radius),)
    if kind == "crack":
        half_width = rng.uniform(1.2 * MM, 1.6 * MM)
        for length in np.linspace(22 * MM, 6 * MM, 9):
            for _ in range(200):
                start = _defect_site(obj, rng, half_width)
                ang = rng.uniform(0, 2 * math.pi)
                end = (start[0] + length * math.cos(ang), start[1] + length * math.sin(ang))
                if obj.interior(np.array([end[0]]), np.array([end[1]]), half_width)[0]:
                    return (Defect("crack", start, half_width,
                                   depth=-rng.uniform(2.0 * MM, 2.5 * MM), end=end),)
        raise RuntimeError(f"no room for a crack on {obj.name}")
    raise ValueError(f"unknown defect type {kind!r}; choose from {DEFECT_TYPES}")


def sample_spec(config: SynthConfig, class_name: str, split: str, defect: str,
                index: int) -> SampleSpec:
    """The deterministic specification of sample ``index`` of (class, split, defect)."""
    obj = SYNTH_OBJECTS[class_name]
    pose_ss, tex_ss, noise_ss, defect_ss = _sample_seed(config.seed, class_name, split, defect,
                                                        index).spawn(4)
    rng = np.random.default_rng(pose_ss)
    pose = Pose(dx=rng.uniform(-3, 3) * MM, dy=rng.uniform(-3, 3) * MM,
                angle=rng.uniform(-obj.max_rotation, obj.max_rotation),
                scale=rng.uniform(0.97, 1.03), tilt_x=rng.uniform(-0.03, 0.03),
                tilt_y=rng.uniform(-0.03, 0.03), distance=rng.uniform(-5, 5) * MM)
    defects = () if defect == "good" else make_defects(obj, defect,
                                                       np.random.default_rng(defect_ss))
    return SampleSpec(class_name=class_name, pose=pose,
                      texture_seed=int(tex_ss.generate_state(1)[0]),
                      noise_seed=int(noise_ss.generate_state(1)[0]), defects=defects)


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------

def _segment_distance(x, y, a, b):
    ax, ay = a
    bx, by = b
    vx, vy = bx - ax, by - ay
    t = np.clip(((x - ax) * vx + (y - ay) * vy) / max(vx * vx + vy * vy, 1e-30), 0, 1)
    return np.hypot(x - (ax + t * vx), y - (ay + t * vy))


def _displacement(defect: Defect, x, y) -> np.ndarray:
    if defect.kind in ("dent", "bump"):
        q = np.clip(1 - ((x - defect.centre[0]) ** 2 + (y - defect.centre[1]) ** 2)
                    / defect.radius ** 2, 0, None)
        return defect.depth * q * q
    if defect.kind == "crack":
        d = _segment_distance(x, y, defect.centre, defect.end)
        return defect.depth * np.clip(1 - (d / defect.radius) ** 2, 0, None)
    return np.zeros_like(x)


def _stain_mask(defect: Defect, x, y) -> np.ndarray:
    dx, dy = x - defect.centre[0], y - defect.centre[1]
    phi = np.arctan2(dy, dx)
    outline = np.ones_like(x)
    for k, (amp, phase) in enumerate(zip(defect.shape[::2], defect.shape[1::2]), start=2):
        outline += amp * np.sin(k * phi + phase)
    return np.hypot(dx, dy) < defect.radius * outline


def render_sample(spec: SampleSpec, config: SynthConfig) -> tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray]:
    """Render ``(rgb uint8 (S,S,3), xyz float32 (S,S,3), gt bool (S,S))`` for ``spec``."""
    obj = SYNTH_OBJECTS[spec.class_name]
    size, f, c = config.size, config.focal_length, config.principal_point
    pose = spec.pose
    grid = (np.arange(size, dtype=np.float64) - c) / f
    xn, yn = np.meshgrid(grid, grid)  # ray directions (xn, yn, 1)
    # Depth of the support plane Z = D + tx X + ty Y along each ray, and where the ray meets it.
    z_plane = (config.camera_distance + pose.distance) / (1 - pose.tilt_x * xn - pose.tilt_y * yn)
    px, py = xn * z_plane, yn * z_plane
    # Object-local coordinates (undo the pose: translate, rotate, scale).
    ca, sa = math.cos(pose.angle), math.sin(pose.angle)
    lx = (ca * (px - pose.dx) + sa * (py - pose.dy)) / pose.scale
    ly = (-sa * (px - pose.dx) + ca * (py - pose.dy)) / pose.scale

    texture = obj.texture(np.random.default_rng(spec.texture_seed))
    base = obj.height(lx, ly, texture) * pose.scale
    on_object = base > 0
    displacement = np.zeros_like(base)
    gt = np.zeros(base.shape, dtype=bool)
    stain = np.zeros(base.shape, dtype=bool)
    stain_colour = np.zeros(3)
    for defect in spec.defects:
        if defect.kind == "stain":
            hit = _stain_mask(defect, lx, ly) & on_object
            stain |= hit
            stain_colour = np.asarray(defect.colour)
            gt |= hit
        else:
            g = _displacement(defect, lx, ly) * pose.scale * on_object
            displacement += g
            gt |= np.abs(g) >= MASK_FRACTION * abs(defect.depth * pose.scale)
    height = base + displacement

    noise = np.random.default_rng(spec.noise_seed)
    depth_noise = noise.normal(0.0, config.depth_noise, size=base.shape)
    colour_noise = noise.normal(0.0, config.colour_noise, size=base.shape + (3,))

    z = z_plane - height + depth_noise
    xyz = np.stack([xn * z, yn * z, z], axis=-1).astype(np.float32)
    pitch = z_plane / f  # metres per pixel on the plane
    gy, gx = np.gradient(height)
    steep = np.hypot(gx, gy) > config.max_slope * pitch
    xyz[steep] = 0.0  # a structured-light scanner does not see steep walls: holes

    # Colour: albedo x Lambert shading of the defect-free shape (defects do not shade).
    by, bx = np.gradient(base)
    normal = np.stack([-bx / pitch, -by / pitch, np.ones_like(base)], axis=-1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    light = np.array([0.3, -0.3, 1.0]) / math.sqrt(1.18)
    shade = 0.35 + 0.65 * np.clip(normal @ light, 0, None)
    background = _colour((0.13, 0.13, 0.14), px, 1 + 0.05 * np.sin(40 * px + 25 * py))
    albedo = np.where(on_object[..., None], obj.albedo(lx, ly, texture), background)
    if stain.any():
        albedo[stain] = stain_colour * (1 + 0.05 * np.sin(900 * lx[stain]))[:, None]
    rgb = np.clip(albedo * shade[..., None] + colour_noise, 0, 1)
    return (np.round(rgb * 255).astype(np.uint8), xyz, gt)


# ---------------------------------------------------------------------------------------------
# Writing a dataset
# ---------------------------------------------------------------------------------------------

def _sample_plan(config: SynthConfig) -> list[tuple[str, str, int]]:
    """(split, defect, count) for every folder of a class."""
    n_good = config.n_test if config.n_test_good is None else config.n_test_good
    plan = [("train", "good", config.n_train), ("validation", "good", config.n_val),
            ("test", "good", n_good)]
    plan += [("test", defect, config.n_test) for defect in config.defects]
    return [p for p in plan if p[2] > 0]


def _prepare_class_dir(class_dir: Path, overwrite: bool) -> None:
    if not class_dir.exists() or not any(class_dir.iterdir()):
        return
    if not overwrite:
        raise DatasetError(class_dir, "folder exists and is not empty (use overwrite=True / "
                                      "--overwrite to replace a synthetic dataset)")
    if not (class_dir / MARKER_FILE).is_file():
        raise DatasetError(class_dir, f"refusing to overwrite: the folder was not written by "
                                      f"the synthetic generator (no {MARKER_FILE})")
    shutil.rmtree(class_dir)


def camera_parameters(config: SynthConfig) -> dict:
    return {"generator": "mentor3ad_ext synthetic data", "camera_model": "pinhole",
            "units": "metres", "fx": config.focal_length, "fy": config.focal_length,
            "cx": config.principal_point, "cy": config.principal_point,
            "image_width": config.size, "image_height": config.size,
            "camera_distance": config.camera_distance}


def generate_synthetic_dataset(out: str | os.PathLike, config: SynthConfig | None = None, *,
                               overwrite: bool = False,
                               progress: Callable[[str], None] | None = None) -> dict:
    """Write a synthetic dataset in the MVTec 3D-AD layout under ``out``.

    Returns ``{class: {"<split>/<defect>": count}}``.  An existing class folder is only
    replaced with ``overwrite=True`` and only if this generator wrote it.
    """
    config = config if config is not None else SynthConfig()
    out = Path(out)
    summary: dict[str, dict[str, int]] = {}
    for class_name in config.classes:
        class_dir = out / class_name
        _prepare_class_dir(class_dir, overwrite)
        class_dir.mkdir(parents=True, exist_ok=True)
        counts: dict[str, int] = {}
        for split, defect, count in _sample_plan(config):
            folder = class_dir / split / defect
            for index in range(count):
                spec = sample_spec(config, class_name, split, defect, index)
                rgb, xyz, gt = render_sample(spec, config)
                stem = f"{index:03d}"
                write_rgb(folder / "rgb" / f"{stem}.png", rgb)
                write_xyz(folder / "xyz" / f"{stem}.tiff", xyz)
                if split == "test":
                    write_gt(folder / "gt" / f"{stem}.png", gt)
            counts[f"{split}/{defect}"] = count
            if progress is not None:
                progress(f"{class_name}/{split}/{defect}: {count} sample(s)")
        calib = class_dir / "calibration" / "camera_parameters.json"
        calib.parent.mkdir(parents=True, exist_ok=True)
        calib.write_text(json.dumps(camera_parameters(config), indent=2))
        marker = {"config": asdict(replace(config, classes=(class_name,))), "counts": counts}
        (class_dir / MARKER_FILE).write_text(json.dumps(marker, indent=2))
        summary[class_name] = counts
    return summary


def synth_config_from(classes: Iterable[str] | None = None, **kwargs) -> SynthConfig:
    """A `SynthConfig` from keyword arguments, ignoring those that are None (CLI helper)."""
    values = {k: v for k, v in kwargs.items() if v is not None}
    if classes is not None:
        values["classes"] = tuple(classes)
    if "defects" in values:
        values["defects"] = tuple(values["defects"])
    return SynthConfig(**values)
