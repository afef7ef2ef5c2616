"""Ball query: cases, peers and their correctness checks.

Inputs: one cloud of N points and Q query points drawn independently and uniformly in the unit
cube (float32, seeded). `ball_query(queries, points, K=K, radius=r, return_nn=False)`: per
query the first K points in INDEX order whose squared distance is strictly below r**2
(pytorch3d's semantics), padded with -1. At N=100k, r=0.06 puts about 84 points in a ball on
average (90 for a query away from the faces; the exact mean of this input is in the check's
verdict), so most queries are capped at K=32.

Implementations (each skipped with a note when its package does not import):
- ours: `mentor3ad_ext.ball_query`. Checked equal (indices and distances) to the in-package
  reference on the queries the reference runs on.
- reference: `mentor3ad_ext.reference.ball_query`, the (Q, N) distance matrix and a Python loop
  over queries. Linear in Q: on CPU when Q*N exceeds REF_BUDGET it runs on the first `q_ref`
  queries and its time is multiplied by Q/q_ref (stated in the note). Checked equal to ours.
- scipy `cKDTree(points).query_ball_point(queries, r, return_sorted=True, workers=-1)`, then the
  first K indices of every list packed into a (Q, K) array padded with -1 (tree build and
  packing timed). scipy's ball is d <= r in float64, ours d**2 < r**2 in float32: the check
  requires the same first-K set as ours on every query except those with a point within 1e-6
  of the sphere, which must be absent from the input (recorded).
- open3d `NearestNeighborSearch.hybrid_search(queries, r, K)`: the K NEAREST points within the
  radius (different semantics from ours: sorted by distance, not the first K by index), so it
  gets a property check only: every returned point is inside the ball, counts are
  min(K, points in the ball), and its distances are the K smallest of the ball (equal to ours'
  knn_points distances below r**2). Index build timed.
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

REF_BUDGET = int(float(os.environ.get("MENTOR3AD_BENCH_BALL_REF_BUDGET", "3e7")))
BOUNDARY = 1e-6  # |d**2 - r**2| below which float32 and float64 may disagree on membership


@dataclasses.dataclass(frozen=True)
class BallSize:
    N: int
    Q: int
    K: int
    radius: float
    slow: bool = False

    @property
    def name(self) -> str:
        return f"N={_short(self.N)} Q={_short(self.Q)} K={self.K} r={self.radius:g}"


SIZES = [BallSize(100_000, 4096, 32, 0.06)]


def ref_queries(size, device: str) -> int:
    return _ref_queries(size, device, REF_BUDGET)


class _Data(PointQueryData):
    @functools.cached_property
    def ours(self) -> Tuple[np.ndarray, np.ndarray]:
        import mentor3ad_ext as m

        s = self.size
        out = m.ball_query(self.queries, self.points, K=s.K, radius=s.radius, return_nn=False)
        return out.dists[0].cpu().numpy(), out.idx[0].cpu().numpy()

    @functools.lru_cache(maxsize=None)
    def reference(self, q: int) -> Tuple[np.ndarray, np.ndarray]:
        from mentor3ad_ext import reference as R

        s = self.size
        out = R.ball_query(self.queries[:, :q], self.points, K=s.K, radius=s.radius, return_nn=False)
        return out.dists[0].cpu().numpy(), out.idx[0].cpu().numpy()

    @functools.cached_property
    def ball_stats(self) -> Tuple[np.ndarray, np.ndarray]:
        """Per query (float64): points in the ball, and points within BOUNDARY of the sphere."""
        p = torch.from_numpy(self.points_np).double()
        q = torch.from_numpy(self.queries_np).double()
        r2 = self.size.radius ** 2
        counts, near = [], []
        for i in range(0, q.shape[0], 256):
            d = torch.cdist(q[i:i + 256], p, compute_mode="donot_use_mm_for_euclid_dist") ** 2
            counts.append((d < r2).sum(1))
            near.append(((d - r2).abs() < BOUNDARY).sum(1))
        return torch.cat(counts).numpy(), torch.cat(near).numpy()

    @functools.cached_property
    def knn_dists(self) -> np.ndarray:
        import mentor3ad_ext as m

        return m.knn_points(self.queries, self.points, K=self.size.K).dists[0].cpu().numpy()


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if hasattr(x, "numpy"):
        return x.numpy()
    return np.asarray(x)


def _check_exact(name: str, out: Any, want: Tuple[np.ndarray, np.ndarray], what: str, total: int) -> str:
    dists, idx = _np(out.dists)[0], _np(out.idx)[0]
    wd, wi = want
    q = wi.shape[0]
    dists, idx = dists[:q], idx[:q]
    if idx.shape != wi.shape:
        raise AssertionError(f"{name}: expected {wi.shape} indices, got {idx.shape}")
    if not np.array_equal(idx, wi):
        r, k = map(int, np.argwhere(idx != wi)[0])
        raise AssertionError(f"{name}: idx differ from {what} at query {r}, slot {k}: {idx[r, k]} != {wi[r, k]}")
    if not np.array_equal(dists, wd):
        r, k = map(int, np.argwhere(dists != wd)[0])
        raise AssertionError(f"{name}: dists differ from {what} at query {r}, slot {k}")
    return f"idx and dists = {what}" + ("" if q == total else f" (first {q} of {total} queries)")


def _check_ours(out: Any, data: _Data, q_ref: int) -> str:
    verdict = _check_exact("ours", out, data.reference(q_ref), "reference", data.size.Q)
    counts, _ = data.ball_stats
    got = (_np(out.idx)[0] >= 0).sum(1)
    want = np.minimum(counts, data.size.K)
    bad = np.flatnonzero(got != want)
    if len(bad):
        raise AssertionError(f"ours: query {bad[0]} returned {got[bad[0]]} points, the ball holds {counts[bad[0]]}")
    return (f"{verdict}; counts = min(K, ball size) on all queries "
            f"(mean ball size {counts.mean():.1f}, {np.mean(counts >= data.size.K):.0%} of queries capped at K)")


def _check_scipy(out: np.ndarray, data: _Data) -> str:
    idx = np.asarray(out)
    _, oi = data.ours
    if idx.shape != oi.shape:
        raise AssertionError(f"scipy: expected {oi.shape}, got {idx.shape}")
    _, near = data.ball_stats
    differ = np.flatnonzero((idx != oi).any(1))
    unexplained = [int(q) for q in differ if near[q] == 0]
    if unexplained:
        q = unexplained[0]
        raise AssertionError(f"scipy: first-K set differs from ours at query {q} with no point near the sphere: "
                             f"{idx[q].tolist()} vs {oi[q].tolist()}")
    return ("first K = ours on every query" if len(differ) == 0 else
            f"first K = ours except {len(differ)} queries with a point within {BOUNDARY:g} of the sphere")


def _check_open3d(out: Tuple[Any, Any, Any], data: _Data) -> str:
    idx, dists, counts = (_np(x) for x in out)
    s = data.size
    r2 = s.radius ** 2
    ball, near = data.ball_stats
    want = np.minimum(ball, s.K)
    exact_ok = near == 0
    if ((counts != want) & exact_ok).any():
        q = int(np.flatnonzero((counts != want) & exact_ok)[0])
        raise AssertionError(f"open3d: query {q} returned {counts[q]} points, the ball holds {ball[q]}")
    valid = np.arange(s.K)[None, :] < counts[:, None]
    if (idx[valid] < 0).any() or (idx[valid] >= s.N).any():
        raise AssertionError("open3d: index outside the cloud")
    diff = data.queries_np.astype(np.float64)[:, None, :] - data.points_np.astype(np.float64)[np.where(valid, idx, 0)]
    d64 = (diff * diff).sum(-1)
    if (d64[valid] > r2 + BOUNDARY).any():
        raise AssertionError("open3d: returned a point outside the ball")
    for q in range(s.Q):  # distinct
        row = idx[q, : counts[q]]
        if len(np.unique(row)) != len(row):
            raise AssertionError(f"open3d: query {q} repeats a point")
    # The K nearest inside the ball: its distances are ours knn_points distances below r**2.
    kd = data.knn_dists.astype(np.float64)
    err = np.where(valid, np.abs(np.sort(np.where(valid, d64, np.inf), axis=1) - kd), 0.0)
    if (err > 1e-5 * kd + 2e-6).any():
        q = int(np.argwhere(err > 1e-5 * kd + 2e-6)[0][0])
        raise AssertionError(f"open3d: query {q}: not the nearest points of the ball")
    same = float(np.mean([np.array_equal(np.sort(idx[q, :counts[q]]), data.ours[1][q, :counts[q]])
                          for q in range(s.Q)]))
    return (f"property: min(K, ball) nearest points inside the ball (different semantics: nearest K, "
            f"not first K by index); same set as ours on {same:.1%} of queries")


def ball_query_case(size: BallSize, device: str, seed: int = 0) -> Case:
    data = _Data(size, device, seed)
    q_ref = ref_queries(size, device)
    on_cuda = torch.device(device).type == "cuda"

    def prep_ours():
        import mentor3ad_ext as m

        p, q = data.points, data.queries
        return lambda: m.ball_query(q, p, K=size.K, radius=size.radius, return_nn=False)

    def prep_reference():
        from mentor3ad_ext import reference as R

        p, q = data.points, data.queries[:, :q_ref]
        return lambda: R.ball_query(q, p, K=size.K, radius=size.radius, return_nn=False)

    impls: List[Impl] = [
        Impl("mentor3ad_ext", OURS, prep_ours, lambda out: _check_ours(out, data, q_ref)),
        Impl("reference (torch, distance matrix + per-query loop)", REFERENCE, prep_reference,
             lambda out: _check_exact("reference", out, (data.ours[0][:q_ref], data.ours[1][:q_ref]), "ours", q_ref),
             scale=size.Q / q_ref,
             note="" if q_ref == size.Q else
             f"run on the first {q_ref} of {size.Q} queries, time x {size.Q / q_ref:.4g} (linear in Q); "
             f"peak memory is that of {q_ref} queries"),
    ]
    if not on_cuda:
        impls += [
            Impl("scipy cKDTree query_ball_point", PEER, lambda: _prep_scipy(data),
                 lambda out: _check_scipy(out, data), requires=("scipy",),
                 note="workers=-1, return_sorted=True, float64 (d <= r); build + query + first-K packing timed"),
            Impl("open3d hybrid_search", PEER, lambda: _prep_open3d(data),
                 lambda out: _check_open3d(out, data), requires=("open3d",),
                 note="nearest K within the radius (not first K by index): property check only; "
                      "hybrid_index build timed"),
        ]
    return Case("ball_query", size.name, device, dataclasses.asdict(size), impls, slow=size.slow, data=data)


def _prep_scipy(data: _Data):
    from scipy.spatial import cKDTree

    p, q, s = data.points_np, data.queries_np, data.size

    def run():
        lists = cKDTree(p).query_ball_point(q, s.radius, return_sorted=True, workers=-1)
        out = np.full((len(lists), s.K), -1, dtype=np.int64)
        for i, li in enumerate(lists):
            li = li[: s.K]
            out[i, : len(li)] = li
        return out

    return run


def _prep_open3d(data: _Data):
    import open3d as o3d

    p = o3d.core.Tensor.from_numpy(data.points_np)
    q = o3d.core.Tensor.from_numpy(data.queries_np)
    s = data.size

    def run():
        nns = o3d.core.nns.NearestNeighborSearch(p)
        if not nns.hybrid_index(s.radius):
            raise RuntimeError("open3d hybrid_index failed")
        return nns.hybrid_search(q, s.radius, s.K)  # (indices, squared distances, counts)

    return run


@register("ball_query")
def cli_cases(device: str, quick: bool) -> List[Case]:
    sizes = [BallSize(16_000, 1024, 32, 0.11)] if quick else SIZES
    return [ball_query_case(s, device) for s in sizes]
