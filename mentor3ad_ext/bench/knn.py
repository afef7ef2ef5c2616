"""Exact k nearest neighbours: cases, peers and their correctness checks.

Inputs: one cloud of N points and Q query points, both drawn independently and uniformly in the
unit cube (float32, seeded); `knn_points(queries, points, K=K)`: per query the K nearest points,
squared Euclidean distances in ascending (distance, index) order.

Implementations (each skipped with a note when its package does not import):
- ours: `mentor3ad_ext.knn_points`. Checked equal (indices and distances, bit for bit) to the
  in-package reference on the queries the reference is run on, and ascending on every query.
- reference: `mentor3ad_ext.reference.knn_points`, the full (Q, N) distance matrix and a stable
  sort of every row. Its time and memory are linear in Q, so on CPU when Q*N exceeds
  REF_BUDGET pairs it is run on the first `q_ref` queries and its time multiplied by Q/q_ref
  (`Impl.scale`, stated in the note; its peak memory is that of the q_ref queries). Checked equal
  to ours on those queries.
- torch cdist + topk: `torch.cdist(q, p).topk(K, largest=False)`, what users write (Euclidean
  distances; cdist's default uses the matrix-product formula for these sizes, so its squared
  distances carry float32 cancellation errors of ~1e-6 absolute).
- scipy `cKDTree(points).query(queries, k=K, workers=-1)`: tree build included in the time (the
  issue's comparison); a second row times the query alone on a prebuilt tree. float64.
- faiss `IndexFlatL2` (exact brute force, float32, add + search timed; may order ties differently).
- open3d `o3d.core.nns.NearestNeighborSearch` (index build + `knn_search`, multi-threaded).

Peer checks (none of them promises our tie order): for every query, the peer's reported
distances and the distances of the points it returns (recomputed in float64) equal ours to
|d - d_ours| <= RTOL*d_ours + ATOL (squared distances); whether the indices equal ours is recorded.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, List, Tuple

import numpy as np
import torch

from ._core import PointQueryData, ref_queries as _ref_queries, OURS, PEER, REFERENCE, Case, Impl, register
from .fps import _short

# Reference work budget on CPU, in (query, point) pairs: the distance matrix and its sort.
REF_BUDGET = int(float(os.environ.get("MENTOR3AD_BENCH_KNN_REF_BUDGET", "1e7")))
# Distance tolerance for peers (squared distances in the unit cube, float32 inputs).
RTOL, ATOL = 1e-5, 2e-6


@dataclasses.dataclass(frozen=True)
class KnnSize:
    N: int
    Q: int
    K: int
    slow: bool = False
    D: int = 3

    @property
    def name(self) -> str:
        return f"N={_short(self.N)} Q={_short(self.Q)} K={self.K}" + ("" if self.D == 3 else f" D={self.D}")


# The sizes of the kNN issue, then a feature-space search: one image's 28 x 28 patch features
# (1152 = Point-MAE's concatenated blocks) against a 20k-patch memory bank, nearest neighbour;
# and two mid-dimensional ones: 6-D (e.g. xyz + colour, our KD-tree) and 16-D embeddings (the
# matrix-product filter; a tree still prunes a little there).
SIZES = [
    KnnSize(16_000, 1024, 128),
    KnnSize(100_000, 4096, 32),
    KnnSize(16_000, 16_000, 16),
    KnnSize(20_000, 784, 1, D=1152),
    KnnSize(100_000, 4096, 16, D=6),
    KnnSize(16_000, 4096, 16, D=16),
]


def ref_queries(size, device: str) -> int:
    # the budget counts 3-D pairs: the reference's work per pair grows with D
    return _ref_queries(size, device, REF_BUDGET * 3 // size.D)


class _Data(PointQueryData):
    @functools.cached_property
    def ours(self) -> Tuple[np.ndarray, np.ndarray]:
        import mentor3ad_ext as m

        out = m.knn_points(self.queries, self.points, K=self.size.K)
        return out.dists[0].cpu().numpy(), out.idx[0].cpu().numpy()

    @functools.lru_cache(maxsize=None)
    def reference(self, q: int) -> Tuple[np.ndarray, np.ndarray]:
        from mentor3ad_ext import reference as R

        out = R.knn_points(self.queries[:, :q], self.points, K=self.size.K)
        return out.dists[0].cpu().numpy(), out.idx[0].cpu().numpy()


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if hasattr(x, "numpy"):  # open3d tensors
        return x.numpy()
    return np.asarray(x)


def _check_exact(name: str, dists: Any, idx: Any, want: Tuple[np.ndarray, np.ndarray], what: str) -> str:
    dists, idx = _np(dists), _np(idx)
    wd, wi = want
    q = wi.shape[0]
    if dists.shape[-1] != wi.shape[1] or idx.shape[-1] != wi.shape[1]:
        raise AssertionError(f"{name}: expected K={wi.shape[1]} neighbours, got {idx.shape}")
    dists, idx = dists.reshape(-1, wi.shape[1]), idx.reshape(-1, wi.shape[1])
    total = idx.shape[0]
    dists, idx = dists[:q], idx[:q]
    if not np.array_equal(idx, wi):
        r, k = map(int, np.argwhere(idx != wi)[0])
        raise AssertionError(f"{name}: idx differ from {what} at query {r}, slot {k}: {idx[r, k]} != {wi[r, k]}")
    if not np.array_equal(dists, wd):
        r, k = map(int, np.argwhere(dists != wd)[0])
        raise AssertionError(f"{name}: dists differ from {what} at query {r}, slot {k}: {dists[r, k]!r} != {wd[r, k]!r}")
    return f"idx and dists = {what}" + ("" if q == total else f" (first {q} of {total} queries)")


def _check_ours(out: Any, data: _Data, q_ref: int) -> str:
    dists, idx = _np(out.dists)[0], _np(out.idx)[0]
    verdict = _check_exact("ours", dists, idx, data.reference(q_ref), "reference")
    if (np.diff(dists, axis=1) < 0).any() or (idx < 0).any():
        raise AssertionError("ours: distances not ascending or an index is missing")
    return verdict + "; all rows ascending"


def _check_peer(name: str, dists: Any, idx: Any, data: _Data, squared: bool) -> str:
    """Distances equal ours to RTOL/ATOL (reported and recomputed from the indices)."""
    size = data.size
    dists = _np(dists).reshape(size.Q, -1).astype(np.float64)
    idx = _np(idx).reshape(size.Q, -1).astype(np.int64)
    if idx.shape[1] != size.K:
        raise AssertionError(f"{name}: expected ({size.Q}, {size.K}) neighbours, got {idx.shape}")
    if idx.min() < 0 or idx.max() >= size.N:
        raise AssertionError(f"{name}: index outside [0, {size.N})")
    if not squared:
        dists = dists * dists
    od, oi = data.ours
    od = od.astype(np.float64)
    tol = RTOL * max(1.0, size.D / 3) * od + ATOL  # float32 matrix-product distances drift with D
    err = np.abs(dists - od)
    if (err > tol).any():
        r, k = map(int, np.argwhere(err > tol)[0])
        raise AssertionError(f"{name}: reported distance differs from ours at query {r}, slot {k}: "
                             f"{dists[r, k]:.9g} vs {od[r, k]:.9g}")
    diff = data.queries_np.astype(np.float64)[:, None, :] - data.points_np.astype(np.float64)[idx]
    exact = np.sort((diff * diff).sum(-1), axis=1)
    rerr = np.abs(exact - od)
    if (rerr > tol).any():
        r, k = map(int, np.argwhere(rerr > tol)[0])
        raise AssertionError(f"{name}: its neighbours are not the K nearest: query {r}, slot {k}: "
                             f"{exact[r, k]:.9g} vs ours {od[r, k]:.9g}")
    same = float((idx == oi).all(axis=1).mean())
    idx_note = "idx = ours" if same == 1.0 else f"idx = ours on {same:.2%} of queries (ties/rounding)"
    return f"dists = ours (max |diff| {err.max():.2g}); {idx_note}"


def knn_case(size: KnnSize, device: str, seed: int = 0) -> Case:
    """All implementations of one kNN size on one device (inputs built on first use)."""
    data = _Data(size, device, seed)
    K = size.K
    q_ref = ref_queries(size, device)
    on_cuda = torch.device(device).type == "cuda"

    def prep_ours():
        import mentor3ad_ext as m

        p, q = data.points, data.queries
        return lambda: m.knn_points(q, p, K=K)

    def prep_reference():
        from mentor3ad_ext import reference as R

        p, q = data.points, data.queries[:, :q_ref]
        return lambda: R.knn_points(q, p, K=K)

    def prep_untiled():
        import mentor3ad_ext as m
        from mentor3ad_ext.ops import knn as knn_op

        p, q = data.points, data.queries

        def run():
            saved, knn_op.TILES_MIN_POINTS = knn_op.TILES_MIN_POINTS, 1 << 62  # never pays
            try:
                return m.knn_points(q, p, K=K)
            finally:
                knn_op.TILES_MIN_POINTS = saved
        return run

    def prep_cdist():
        p, q = data.points, data.queries
        return lambda: torch.cdist(q, p).topk(K, dim=-1, largest=False)

    impls: List[Impl] = [
        Impl("mentor3ad_ext", OURS, prep_ours, lambda out: _check_ours(out, data, q_ref)),
        Impl("reference (torch, full distance matrix + stable sort)", REFERENCE, prep_reference,
             lambda out: _check_exact("reference", out.dists[0], out.idx[0],
                                      (data.ours[0][:q_ref], data.ours[1][:q_ref]), "ours"),
             scale=size.Q / q_ref,
             note="" if q_ref == size.Q else
             f"run on the first {q_ref} of {size.Q} queries, time x {size.Q / q_ref:.4g} (linear in Q); "
             f"peak memory is that of {q_ref} queries (the full run materialises Q x N = "
             f"{size.Q * size.N * 4 / 2**30:.2g} GiB of float32 distances, several times over)"),
        Impl("torch cdist + topk", PEER, prep_cdist,
             lambda out: _check_peer("torch cdist+topk", out.values, out.indices, data, squared=False),
             note="Euclidean distances (squared for the check); cdist's default matrix-product formula"),
    ]
    if on_cuda:
        impls.append(Impl("mentor3ad_ext, index-order scan (no sorted tiles)", REFERENCE, prep_untiled,
                          lambda out: _check_exact("untiled", out.dists[0], out.idx[0], data.ours, "ours"),
                          note="ablation: the CUDA kernels the 3-D path used before the sorted tiles "
                               "(one thread or warp per query over every point)"))
    if not on_cuda:
        scipy = lambda name, build, note: Impl(  # noqa: E731
            name, PEER, lambda: _prep_scipy(data, build=build),
            lambda out: _check_peer("scipy", out[0], out[1], data, squared=False), requires=("scipy",), note=note)
        if size.D <= 16:  # beyond, trees prune little: faiss is the feature-space peer
            impls.append(scipy("scipy cKDTree build + query", True, "workers=-1, float64; tree build included"))
        if size.D <= 3:
            impls.append(scipy("scipy cKDTree query only (prebuilt tree)", False, "workers=-1, float64; build excluded"))
        impls.append(Impl("faiss IndexFlatL2", PEER, lambda: _prep_faiss(data),
                          lambda out: _check_peer("faiss", out[0], out[1], data, squared=True),
                          requires=("faiss",), dist="faiss-cpu",
                          note="exact brute force (BLAS distances), float32, add + search; ties may be "
                               "ordered differently"))
        if size.D == 3:
            impls.append(Impl("open3d NearestNeighborSearch knn", PEER, lambda: _prep_open3d(data),
                              lambda out: _check_peer("open3d", out[1], out[0], data, squared=True),
                              requires=("open3d",), note="knn_index build + knn_search, float32"))
    return Case("knn", size.name, device, dataclasses.asdict(size), impls, slow=size.slow, data=data)


def _prep_scipy(data: _Data, build: bool):
    from scipy.spatial import cKDTree

    p, q, K = data.points_np, data.queries_np, data.size.K
    if build:
        return lambda: cKDTree(p).query(q, k=K, workers=-1)
    tree = cKDTree(p)
    return lambda: tree.query(q, k=K, workers=-1)


def _prep_faiss(data: _Data):
    import faiss

    p, q, K = data.points_np, data.queries_np, data.size.K

    def run():
        index = faiss.IndexFlatL2(p.shape[1])
        index.add(p)
        return index.search(q, K)

    return run


def _prep_open3d(data: _Data):
    import open3d as o3d

    p = o3d.core.Tensor.from_numpy(data.points_np)
    q = o3d.core.Tensor.from_numpy(data.queries_np)
    K = data.size.K

    def run():
        nns = o3d.core.nns.NearestNeighborSearch(p)
        if not nns.knn_index():
            raise RuntimeError("open3d knn_index failed")
        return nns.knn_search(q, K)  # (indices int64, squared distances float32)

    return run


@register("knn")
def cli_cases(device: str, quick: bool) -> List[Case]:
    sizes = [KnnSize(16_000, 256, 16)] if quick else SIZES
    return [knn_case(s, device) for s in sizes]
