"""Farthest point sampling: cases, peers and their correctness checks.

Inputs: B clouds of N points drawn uniformly in the unit cube (float32, seeded).

Implementations (each skipped with a note when its package does not import):
- ours: `mentor3ad_ext.sample_farthest_points`. Checked equal, index for index, to the in-package
  reference (over its first `k_ref` samples where the reference is scaled down, see below).
- reference: `mentor3ad_ext.reference.sample_farthest_points`, one torch pass over the cloud per
  sample (O(N*K), a host sync per sample). It costs O(N) per sample whatever the sample index, so
  on CPU, when B*N*K exceeds REF_BUDGET elements, it is timed on the first `k_ref` samples and
  its time multiplied by K/k_ref (`Impl.scale`, stated in the note). Checked equal to ours.
- torch loop (CUDA only): the same algorithm batched over clouds with the argmax kept on the GPU
  (no host sync per sample), what one writes in plain torch for a GPU. Checked equal to ours.
- fpsample (CPU, one cloud per call, clouds in a Python loop): `fps_sampling` (vanilla) and the
  QuickFPS bucket variants `bucket_fps_kdtree_sampling` and `bucket_fps_kdline_sampling` with
  h in {5, 7, 9} (fpsample: "h=3 for small, 5 or 7 for medium, 9 for large workloads"; h=3 is
  slower than h=5 at every size here). fpsample does not promise our order, so its hard check is
  a property check (K distinct valid indices per cloud); whether the order equals ours started
  from the peer's first index is recorded next to it. (fpsample 1.0.2's bucket variants return
  the textbook order but do not honour start_idx: they start from a point of the tree order.)
- open3d `PointCloud.farthest_point_down_sample` (CPU, float64, returns points in index order):
  hard check K distinct points of the cloud; records whether they are exactly our float64 set.
- torch_cluster.fps, pytorch3d.ops.sample_farthest_points where they import (property check
  plus order comparison, as above).
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ._core import OURS, PEER, REFERENCE, Case, Impl, register

# Reference work budget on CPU, in point-distance evaluations (B*N*k): about 1-5 s on one core.
REF_BUDGET = int(float(os.environ.get("MENTOR3AD_BENCH_REF_BUDGET", "3e8")))
KDLINE_HEIGHTS = (5, 7, 9)


@dataclasses.dataclass(frozen=True)
class FpsSize:
    B: int
    N: int
    K: int
    slow: bool = False
    D: int = 3

    @property
    def name(self) -> str:
        s = f"N={_short(self.N)} K={self.K}" + ("" if self.D == 3 else f" D={self.D}")
        return s if self.B == 1 else f"B={self.B} x {s}"


def _short(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


# The sizes of issue 3. The 1M case takes minutes on 2 cores (peers and reference included).
SIZES = [
    FpsSize(1, 16_000, 1024),
    FpsSize(1, 100_000, 1024),
    FpsSize(1, 1_000_000, 4096, slow=True),
    FpsSize(16, 16_000, 1024),
    # Feature space: the greedy coreset of a PatchCore-style memory bank (features randomly
    # projected to 128 dimensions, as PatchCore does before its coreset selection).
    FpsSize(1, 20_000, 1000, D=128),
]


def ref_samples(size: FpsSize, device: str) -> int:
    """How many samples the reference is timed on (all of them on CUDA or within budget)."""
    budget = REF_BUDGET * 3 // size.D  # the budget counts 3-D work
    if torch.device(device).type == "cuda" or size.B * size.N * size.K <= budget:
        return size.K
    return max(16, min(size.K, budget // (size.B * size.N)))


def torch_fps_loop(points: torch.Tensor, K: int) -> torch.Tensor:
    """Textbook FPS batched over clouds in plain torch; the argmax never leaves the device."""
    B, N, _ = points.shape
    rows = torch.arange(B, device=points.device)
    idx = torch.empty((B, K), dtype=torch.int64, device=points.device)
    mind = torch.full((B, N), float("inf"), dtype=points.dtype, device=points.device)
    cur = torch.zeros(B, dtype=torch.int64, device=points.device)
    for s in range(K):
        idx[:, s] = cur
        mind[rows, cur] = float("-inf")
        if s + 1 == K:
            break
        diff = points - points[rows, cur][:, None, :]
        # Same operation order as the kernels: ((dx*dx + dy*dy) + dz*dz).
        d = diff[..., 0] * diff[..., 0]
        for j in range(1, points.shape[2]):
            d = d + diff[..., j] * diff[..., j]
        mind = torch.minimum(mind, d)
        cur = mind.argmax(1)  # first maximal index: ties to the lower index
    return idx


class _Data:
    """Lazily built inputs and cached outputs shared by the implementations of one case."""

    def __init__(self, size: FpsSize, device: str, seed: int):
        self.size, self.device, self.seed = size, device, seed

    @functools.cached_property
    def points(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed)
        return torch.rand(self.size.B, self.size.N, self.size.D, generator=g).to(self.device)

    @functools.cached_property
    def numpy(self) -> np.ndarray:
        return self.points.cpu().numpy()

    @functools.lru_cache(maxsize=None)
    def ours(self, starts: Optional[Tuple[int, ...]] = None, dtype: torch.dtype = torch.float32) -> np.ndarray:
        import mentor3ad_ext as m

        start = 0 if starts is None else torch.tensor(starts, dtype=torch.int64, device=self.device)
        return m.sample_farthest_points(self.points.to(dtype), K=self.size.K, start_idx=start)[1].cpu().numpy()

    @functools.lru_cache(maxsize=None)
    def reference(self, k: int) -> np.ndarray:
        from mentor3ad_ext import reference as R

        return R.sample_farthest_points(self.points, K=k)[1].cpu().numpy()


def _as_idx(out: Any) -> np.ndarray:
    if isinstance(out, tuple):
        out = out[1]
    if isinstance(out, torch.Tensor):
        out = out.cpu().numpy()
    return np.asarray(out).astype(np.int64)


def _check_exact(name: str, got: np.ndarray, want: np.ndarray, what: str) -> str:
    got, want = _as_idx(got), _as_idx(want)
    k = want.shape[1]
    got = got[:, :k]
    if not np.array_equal(got, want):
        b, s = map(int, np.argwhere(got != want)[0])
        raise AssertionError(f"{name}: index order differs from {what} at cloud {b}, sample {s}: "
                             f"{got[b, s]} != {want[b, s]}")
    return f"= {what}" + ("" if k == got.shape[1] else f" (first {k})")


def _check_property(name: str, idx: np.ndarray, data: _Data) -> str:
    """Hard: K distinct in-range indices per cloud. Soft: same order as ours from its start."""
    idx = _as_idx(idx)
    size = data.size
    if idx.shape[0] != size.B or idx.shape[1] < size.K:
        raise AssertionError(f"{name}: expected ({size.B}, >={size.K}) indices, got {idx.shape}")
    idx = idx[:, : size.K]
    for b in range(size.B):
        if idx[b].min() < 0 or idx[b].max() >= size.N:
            raise AssertionError(f"{name}: cloud {b} has an index outside [0, {size.N})")
        if len(np.unique(idx[b])) != size.K:
            raise AssertionError(f"{name}: cloud {b} repeats indices")
    # Compare with ours started where the peer started (bucket fpsample ignores start_idx=0).
    ours = data.ours(tuple(int(i) for i in idx[:, 0]))
    start = "" if (idx[:, 0] == 0).all() else " from its own start"
    if np.array_equal(idx, ours):
        return f"{size.K} distinct valid indices; same order as ours{start}"
    b, s = map(int, np.argwhere(idx != ours)[0])
    where = f"sample {s}" if size.B == 1 else f"cloud {b}, sample {s}"
    return f"{size.K} distinct valid indices; order differs from ours{start} at {where}"


def _per_cloud(fn: Callable[[np.ndarray], Any], clouds: Sequence[np.ndarray]) -> Callable[[], np.ndarray]:
    def run():
        return np.stack([np.asarray(fn(c)) for c in clouds]).astype(np.int64)

    return run


def fps_case(size: FpsSize, device: str, seed: int = 0) -> Case:
    """All implementations of one FPS size on one device (inputs are built on first use)."""
    data = _Data(size, device, seed)
    K = size.K
    k_ref = ref_samples(size, device)
    on_cuda = torch.device(device).type == "cuda"

    def prep_ours():
        import mentor3ad_ext as m

        pts = data.points
        return lambda: m.sample_farthest_points(pts, K=K)[1]

    def prep_reference():
        from mentor3ad_ext import reference as R

        pts = data.points
        return lambda: R.sample_farthest_points(pts, K=k_ref)[1]

    impls: List[Impl] = [
        Impl("mentor3ad_ext", OURS, prep_ours,
             lambda out: _check_exact("ours", out, data.reference(k_ref), "reference")),
        Impl("reference (torch, per-sample loop)", REFERENCE, prep_reference,
             lambda out: _check_exact("reference", out, data.ours()[:, :k_ref], "ours"),
             scale=K / k_ref,
             note="" if k_ref == K else f"timed on the first {k_ref} of {K} samples, time x {K / k_ref:g} "
                                       "(each sample costs one O(N) pass)"),
    ]
    if on_cuda:
        impls.append(Impl("torch loop (batched, argmax on GPU)", REFERENCE,
                          lambda: (lambda pts=data.points: torch_fps_loop(pts, K)),
                          lambda out: _check_exact("torch loop", out, data.ours(), "ours")))
    elif size.D != 3:  # the 3-D peers take 3-D clouds; a coreset is usually this torch loop
        impls.append(Impl("torch loop (batched; the usual greedy-coreset code)", PEER,
                          lambda: (lambda pts=data.points: torch_fps_loop(pts, K)),
                          lambda out: _check_exact("torch loop", out, data.ours(), "ours")))
    else:
        def clouds():
            return [np.ascontiguousarray(c) for c in data.numpy]

        def prep_fpsample(call):
            def prep():
                cs = clouds()
                return _per_cloud(call, cs)
            return prep

        impls.append(Impl("fpsample.fps_sampling", PEER,
                          prep_fpsample(lambda c: _fpsample().fps_sampling(c, K, start_idx=0)),
                          lambda out: _check_property("fpsample vanilla", out, data),
                          requires=("fpsample",)))
        impls.append(Impl("fpsample.bucket_fps_kdtree_sampling", PEER,
                          prep_fpsample(lambda c: _fpsample().bucket_fps_kdtree_sampling(c, K, start_idx=0)),
                          lambda out: _check_property("fpsample kdtree", out, data),
                          requires=("fpsample",)))
        for h in KDLINE_HEIGHTS:
            if 2 ** h > size.N:
                continue
            impls.append(Impl(f"fpsample.bucket_fps_kdline_sampling h={h}", PEER,
                              prep_fpsample(lambda c, h=h: _fpsample().bucket_fps_kdline_sampling(c, K, h=h, start_idx=0)),
                              lambda out, h=h: _check_property(f"fpsample kdline h={h}", out, data),
                              requires=("fpsample",)))
        impls.append(Impl("open3d farthest_point_down_sample", PEER, lambda: _prep_open3d(data),
                          lambda out: _check_open3d(out, data), requires=("open3d",),
                          note="float64 (Open3D's only precision); returns points, not indices"))
    impls.append(Impl("torch_cluster.fps", PEER, lambda: _prep_torch_cluster(data),
                      lambda out: _check_property("torch_cluster", out, data), requires=("torch_cluster",)))
    impls.append(Impl("pytorch3d sample_farthest_points", PEER, lambda: _prep_pytorch3d(data),
                      lambda out: _check_property("pytorch3d", out, data), requires=("pytorch3d",)))
    return Case("fps", size.name, device, dataclasses.asdict(size), impls, slow=size.slow, data=data)


def _fpsample():
    import fpsample

    return fpsample


def _prep_open3d(data: _Data):
    import open3d as o3d

    K = data.size.K
    clouds = [o3d.geometry.PointCloud(o3d.utility.Vector3dVector(c.astype(np.float64))) for c in data.numpy]
    return lambda: [np.asarray(c.farthest_point_down_sample(K, 0).points) for c in clouds]


def _check_open3d(out: List[np.ndarray], data: _Data) -> str:
    K = data.size.K
    ours64 = data.ours(None, torch.float64)
    same = True
    for b, got in enumerate(out):
        cloud = data.numpy[b].astype(np.float64)
        if got.shape != (K, 3):
            raise AssertionError(f"open3d: cloud {b}: expected ({K}, 3) points, got {got.shape}")
        if np.array_equal(got, cloud[np.sort(ours64[b])]):
            continue
        same = False
        # Not our set: at least K distinct points of the cloud.
        if len(np.unique(got, axis=0)) != K:
            raise AssertionError(f"open3d: cloud {b} repeats points")
        from scipy.spatial import cKDTree

        dist, _ = cKDTree(cloud).query(got)
        if dist.max() > 0:
            raise AssertionError(f"open3d: cloud {b} returned a point not in the cloud")
    return f"{K} distinct cloud points; " + ("same set as ours (float64)" if same else "set differs from ours")


def _prep_torch_cluster(data: _Data):
    import torch_cluster

    B, N, K = data.size.B, data.size.N, data.size.K
    flat = data.points.reshape(B * N, 3)
    batch = torch.arange(B, device=flat.device).repeat_interleave(N)
    # torch_cluster takes a ratio and returns ceil(ratio * N) samples per cloud.
    ratio = K / N

    def run():
        idx = torch_cluster.fps(flat, batch, ratio=ratio, random_start=False)
        per = idx.numel() // B
        return (idx.reshape(B, per) - torch.arange(B, device=idx.device)[:, None] * N)

    return run


def _prep_pytorch3d(data: _Data):
    from pytorch3d.ops import sample_farthest_points as p3d_fps

    pts, K = data.points, data.size.K
    return lambda: p3d_fps(pts, K=K)[1]


@register("fps")
def cli_cases(device: str, quick: bool) -> List[Case]:
    sizes = [FpsSize(1, 16_000, 1024)] if quick else [FpsSize(1, 100_000, 1024), FpsSize(16, 16_000, 1024)]
    return [fps_case(s, device) for s in sizes]
