"""k nearest neighbours (pytorch3d-compatible `knn_points` / `knn_gather`)."""
from __future__ import annotations

import math
from collections import namedtuple
from typing import Optional

import torch

from . import _checks as ck
from ._library import custom_op
from ._launch import C, device_args, dtype_tag, host_kernels, ptr
from ._contract import INT64, Contract
from ._knn_dense import dense_pays, knn_dense_into
from ._scatter import gather_rows
from ._tiles import general_tiles_into, outputs, self_tiles_into
from .gather import masked_gather, scatter_add_rows

OP = "knn_points"

KNN = namedtuple("KNN", ["dists", "idx", "knn"])
KNN.__doc__ = "dists (B, P1, K), idx (B, P1, K) int64, knn (B, P1, K, D) or None."


# The CUDA kNN of 3-D points can sort both sides along a Morton curve and prune by tile boxes
# (csrc/knn/knn_tiles.h) instead of scanning every point per query. Its plan (two sorts, codes,
# boxes) costs ~0.4 ms on an H200, so it takes over where the scan costs more: measured there,
# 16k x 16k, K = 16: 1.0 vs 1.9 ms; 4096 queries over 100k, K = 32: 2.8 vs 4.4 ms; 100k x 100k,
# K = 30: 3.0 vs 31 ms; 100k queries over 1M, K = 16: 4.8 vs 126 ms; but 1024 queries over 16k,
# K = 128: 0.93 vs 0.63 ms. K > 32 with few queries runs a warp per query (up to K = 256), or,
# where the C++ rule says so, a block per query with a radix select (csrc/knn/knn_select.h), which
# the tiles must leave alone: that rule is asked, not copied.
TILES_MIN_POINTS = 2048  # per cloud
TILES_MIN_WORK = 1 << 27  # B * P1 * P2 of the scan, K <= 32; a quarter of it for larger K
_WARP_MAX_QUERIES, _WARP_LIST_MAX_K = 1 << 16, 256  # kWarpQueryMaxQueries, kWarpListMaxK
SELECT_AUTO, SELECT_ALWAYS, SELECT_NEVER = 0, 1, 2  # KnnSelectMode


def _block_select_pays(B: int, P1: int, P2: int, K: int) -> bool:
    return C().knn_block_select_pays(B, P1, P2, K)


def tiles_pay(B: int, P1: int, P2: int, K: int) -> bool:
    if P2 < TILES_MIN_POINTS or B * P1 * P2 < (TILES_MIN_WORK if K <= 32 else TILES_MIN_WORK // 4):
        return False
    if _block_select_pays(B, P1, P2, K):
        return False
    return K <= _WARP_LIST_MAX_K or B * P1 >= _WARP_MAX_QUERIES


def _knn_tiles(p1, p2, lengths1, lengths2, K: int, norm: int = 2, list_mode: int = 0, max_dist: float = math.inf):
    """(dists, idx) through the sorted-tiles kernels on any device (the CPU twin on CPU): for tests
    and measurements."""
    dists, idx = outputs(p1, K)
    if dists.numel():
        general_tiles_into(dists, idx, p1, p2, lengths1, lengths2, K, norm, list_mode, max_dist)
    return dists, idx


def _knn_scan_into(dists, idx, p1, p2, lengths1, lengths2, K: int, norm: int, select_mode: int = SELECT_AUTO) -> None:
    """The C++ kNN (CPU kernels, or on CUDA the index-order scans and the block select); fills
    dists/idx. `select_mode` (CUDA): SELECT_AUTO by size, SELECT_ALWAYS forces the block select
    (ValueError where it cannot run: K > 2048), SELECT_NEVER forbids it."""
    B, P1, D = p1.shape
    dev, stream = device_args(p1)
    C().knn(ptr(p1), ptr(p2), ptr(lengths1), ptr(lengths2), ptr(dists), ptr(idx),
            B, P1, p2.shape[1], D, K, norm, select_mode, dtype_tag(p1), dev, stream)


def _knn_scan(p1, p2, lengths1, lengths2, K: int, norm: int = 2, select_mode: int = SELECT_AUTO):
    """(dists, idx) through the C++ kNN, never the sorted tiles: for tests and measurements."""
    p1, p2 = p1.contiguous(), p2.contiguous()
    dists, idx = outputs(p1, K)
    if dists.numel():
        _knn_scan_into(dists, idx, p1, p2, lengths1, lengths2, K, norm, select_mode)
    return dists, idx


def _search_args(op: str, p1, p2, lengths1, lengths2, K: int, dim3: bool = False):
    """The internal searches' contract (_contract.py): (p1, p2, lengths1, lengths2, K)."""
    c = Contract(op)
    p1 = c.tensor("p1", p1, ("B", "P1", 3 if dim3 else "D"))
    p2 = c.tensor("p2", p2, ("B", "P2", "D" if not dim3 else 3), (p1.dtype,))
    lengths1 = c.tensor("lengths1", lengths1, ("B",), INT64)
    lengths2 = c.tensor("lengths2", lengths2, ("B",), INT64)
    if not dim3:
        c.at_least("D", 1)
    return p1, p2, lengths1, lengths2, c.integer("K", K)


def _tiles_into(dists, idx, p1, p2, lengths1, lengths2, K: int, norm: int, max_dist: float = math.inf) -> None:
    """The sorted tiles, with the self plan when p1 and p2 (and their lengths) are one tensor:
    knn_points(p, p), a cloud's kNN graph (one sort instead of two and a home search; float64
    searches of 16 < K < 32 through the float32 filter, ops/_tiles.py)."""
    if p1.data_ptr() == p2.data_ptr() and p1.shape == p2.shape and lengths1.data_ptr() == lengths2.data_ptr():
        self_tiles_into(dists, idx, p1, lengths1, K, norm, max_dist, 0, sorted_rows=False)
    else:
        general_tiles_into(dists, idx, p1, p2, lengths1, lengths2, K, norm, max_dist=max_dist)


@custom_op("mentor3ad::knn", mutates_args=())
def _knn(p1: torch.Tensor, p2: torch.Tensor, lengths1: torch.Tensor, lengths2: torch.Tensor,
         K: int, norm: int) -> tuple[torch.Tensor, torch.Tensor]:
    p1, p2, lengths1, lengths2, K = _search_args("knn", p1, p2, lengths1, lengths2, K)
    if norm not in (1, 2):
        raise ValueError(f"mentor3ad::knn: norm must be 1 or 2, got {norm!r}")
    B, P1, D = p1.shape
    P2 = p2.shape[1]
    dists, idx = outputs(p1, K)
    if dists.numel() and dense_pays(p1, P2, K, norm):
        knn_dense_into(dists, idx, p1.contiguous(), p2.contiguous(), lengths1, lengths2, K, _knn_scan_into)
    elif dists.numel() and D == 3 and not host_kernels(p1) and tiles_pay(B, P1, P2, K):
        _tiles_into(dists, idx, p1, p2, lengths1, lengths2, K, norm)
    elif dists.numel():
        _knn_scan_into(dists, idx, p1, p2, lengths1, lengths2, K, norm)
    return dists, idx


@_knn.register_fake
def _(p1, p2, lengths1, lengths2, K, norm):
    return outputs(p1, K)


def _knn_within_host(p1, p2, lengths1, lengths2, K: int, max_dist: float, idx, dists=None, rows=None) -> None:
    """The CPU kernels' bounded 3-D search into idx (int64, or int32), and into dists unless None
    (none written); rows: (row_start, row_count) for packed int32 rows (KnnParams::row_start)."""
    p1, p2 = p1.contiguous(), p2.contiguous()
    row_start, row_count = rows if rows is not None else (None, None)
    C().knn_within(ptr(p1), ptr(p2), ptr(lengths1), ptr(lengths2), 0 if dists is None else ptr(dists), ptr(idx),
                   p1.shape[0], p1.shape[1], p2.shape[1], K, max_dist, dtype_tag(p1),
                   32 if idx.dtype == torch.int32 else 64, ptr(row_start), ptr(row_count))


@custom_op("mentor3ad::knn_within", mutates_args=())
def _knn_within(p1: torch.Tensor, p2: torch.Tensor, lengths1: torch.Tensor, lengths2: torch.Tensor,
                K: int, max_dist: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Of the K nearest (squared L2), those at distance < max_dist (compared in p1's dtype), -1
    padded (distance 0): open3d's hybrid neighbourhoods, for normals and FPFH with a radius. In
    3-D the bound prunes the search itself: on the CPU the grid and the KD-tree
    (csrc/knn/knn_cpu.cpp), on CUDA the sorted tiles where they serve (no tile beyond the bound
    is scanned, no list takes a point there; FPFH's 100k x 100k search with max_nn = 100 keeps
    ~50); elsewhere the plain kNN, cut after. The same rows either way (the tests check it)."""
    p1, p2, lengths1, lengths2, K = _search_args("knn_within", p1, p2, lengths1, lengths2, K)
    B, P1, D = p1.shape
    P2 = p2.shape[1]
    dists, idx = outputs(p1, K)
    if not dists.numel():
        return dists, idx
    if D == 3 and host_kernels(p1):
        _knn_within_host(p1, p2, lengths1, lengths2, K, max_dist, idx, dists)
        return dists, idx
    if D == 3 and tiles_pay(B, P1, P2, K):
        _tiles_into(dists, idx, p1, p2, lengths1, lengths2, K, 2, max_dist)
        return dists, idx
    dists, idx = _knn(p1.contiguous(), p2.contiguous(), lengths1, lengths2, K, 2)
    inside = dists < torch.tensor(max_dist, dtype=dists.dtype)
    return torch.where(inside, dists, 0), torch.where(inside, idx, -1)


@_knn_within.register_fake
def _(p1, p2, lengths1, lengths2, K, max_dist):
    return outputs(p1, K)


@custom_op("mentor3ad::knn_within_idx", mutates_args=())
def _knn_within_idx(p1: torch.Tensor, p2: torch.Tensor, lengths1: torch.Tensor, lengths2: torch.Tensor,
                    K: int, max_dist: float) -> torch.Tensor:
    """The indices of `_knn_within` alone. The CPU search then writes no distances: FPFH reads
    none, and its (P, max_nn) list of them was first touched into fresh pages at every call
    (100k x 100 in float64: 80 MB, ~16 ms of the kernel zeroing pages on 2 cores)."""
    p1, p2, lengths1, lengths2, K = _search_args("knn_within_idx", p1, p2, lengths1, lengths2, K)
    if p1.shape[2] == 3 and host_kernels(p1) and p1.shape[0] * p1.shape[1] * K:
        idx = torch.empty((p1.shape[0], p1.shape[1], K), dtype=torch.int64)
        _knn_within_host(p1, p2, lengths1, lengths2, K, max_dist, idx)
        return idx
    return _knn_within(p1, p2, lengths1, lengths2, K, max_dist)[1]


@_knn_within_idx.register_fake
def _(p1, p2, lengths1, lengths2, K, max_dist):
    return outputs(p1, K)[1]


INT32_MAX = 2**31 - 1


def fits_int32(p2: torch.Tensor, K: int) -> bool:
    """Whether int32 lists can hold p2's point indices and K (a packed row's count)."""
    return p2.shape[1] <= INT32_MAX and K <= INT32_MAX


def _int32_search_args(op: str, p1, p2, lengths1, lengths2, K: int):
    """_search_args for the CPU kernels' int32 lists (3-D points, sizes that fit; checked first,
    before an expanded view of 2**31 points is made contiguous)."""
    if isinstance(p2, torch.Tensor) and p2.dim() == 3 and isinstance(K, int) and not fits_int32(p2, K):
        raise ValueError(f"mentor3ad::{op}: int32 lists hold at most {INT32_MAX} points and neighbours, "
                         f"got p2 {tuple(p2.shape)}, K {K}")
    return _search_args(op, p1, p2, lengths1, lengths2, K, dim3=True)


@custom_op("mentor3ad::knn_within_idx32", mutates_args=(), device_types="cpu")
def _knn_within_idx32(p1: torch.Tensor, p2: torch.Tensor, lengths1: torch.Tensor, lengths2: torch.Tensor,
                      K: int, max_dist: float) -> torch.Tensor:
    """`_knn_within_idx` as int32 (CPU, 3-D): FPFH's padded (P, max_nn) list at half the memory
    (100k x 100: 40 instead of 80 MB)."""
    p1, p2, lengths1, lengths2, K = _int32_search_args("knn_within_idx32", p1, p2, lengths1, lengths2, K)
    idx = torch.empty((p1.shape[0], p1.shape[1], K), dtype=torch.int32)
    if idx.numel():
        _knn_within_host(p1, p2, lengths1, lengths2, K, max_dist, idx)
    return idx


@_knn_within_idx32.register_fake
def _(p1, p2, lengths1, lengths2, K, max_dist):
    return p1.new_empty((p1.shape[0], p1.shape[1], K), dtype=torch.int32)


@custom_op("mentor3ad::knn_within_rows32", mutates_args=(), device_types="cpu")
def _knn_within_rows32(p1: torch.Tensor, p2: torch.Tensor, lengths1: torch.Tensor, lengths2: torch.Tensor,
                       K: int, max_dist: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`_knn_within_idx32` as packed rows (CPU, 3-D): (idx (B * P1 * K,) int32, row_start (B, P1)
    int64, row_count (B, P1) int32); row r's neighbours are idx[row_start[r]:][:row_count[r]],
    ascending as ever. idx is only the address space of the padded list: the search packs its
    rows within it and never touches the rest (FPFH's list at 100k points, ~50 of max_nn = 100
    in the radius: ~20 instead of 40 MB resident). Entries outside the rows are undefined."""
    p1, p2, lengths1, lengths2, K = _int32_search_args("knn_within_rows32", p1, p2, lengths1, lengths2, K)
    B, P1 = p1.shape[:2]
    idx = torch.empty(B * P1 * K, dtype=torch.int32)
    row_start = torch.zeros((B, P1), dtype=torch.int64)
    row_count = torch.zeros((B, P1), dtype=torch.int32)
    if idx.numel():
        _knn_within_host(p1, p2, lengths1, lengths2, K, max_dist, idx, rows=(row_start, row_count))
    return idx, row_start, row_count


@_knn_within_rows32.register_fake
def _(p1, p2, lengths1, lengths2, K, max_dist):
    B, P1 = p1.shape[:2]
    return (p1.new_empty(B * P1 * K, dtype=torch.int32), p1.new_empty((B, P1), dtype=torch.int64),
            p1.new_empty((B, P1), dtype=torch.int32))


def pair_distance_backward(p1, p2, idx, grad_dists, norm: int, needs_p1: bool = True, needs_p2: bool = True):
    """Gradients of per-neighbour distances d[b, q, j] = dist(p1[b, q], p2[b, idx[b, q, j]]) (norm 2:
    squared Euclidean, norm 1: L1) w.r.t. p1 and p2. Shared by knn_points and ball_query; the p2
    part is the deterministic row scatter."""
    diff = p1[:, :, None, :] - masked_gather(p2, idx)  # (B, P1, K, D); zero rows for idx -1
    g = grad_dists[..., None] * (2 * diff if norm == 2 else torch.sign(diff))
    g = torch.where((idx >= 0)[..., None], g, g.new_zeros(()))
    grad_p1 = g.sum(2) if needs_p1 else None
    grad_p2 = None
    if needs_p2:
        B, P1, K, D = g.shape
        grad_p2 = -scatter_add_rows(g.reshape(B, P1 * K, D), idx.reshape(B, P1 * K), p2.shape[1])
    return grad_p1, grad_p2


def _knn_setup(ctx, inputs, output):
    p1, p2, _, _, _, norm = inputs
    ctx.save_for_backward(p1, p2, output[1])
    ctx.norm = norm


def _knn_backward(ctx, grad_dists, grad_idx):
    p1, p2, idx = ctx.saved_tensors
    g1, g2 = pair_distance_backward(p1, p2, idx, grad_dists, ctx.norm, *ctx.needs_input_grad[:2])
    return g1, g2, None, None, None, None


_knn.register_autograd(_knn_backward, setup_context=_knn_setup)


def _pair_inputs(op: str, p1, p2, lengths1, lengths2):
    ck.check_points(op, "p1", p1, allow_half=True)
    ck.check_points(op, "p2", p2, allow_half=True)
    ck.check_same_device(op, p1=p1, p2=p2)
    if p1.shape[0] != p2.shape[0] or p1.shape[2] != p2.shape[2]:
        raise ValueError(f"{op}: p1 and p2 must agree in batch size and dimension, got p1 "
                         f"{ck.shape_str(p1)} and p2 {ck.shape_str(p2)}")
    if p1.shape[2] < 1:
        raise ValueError(f"{op}: points need at least one coordinate, got p1 {ck.shape_str(p1)}")
    B = p1.shape[0]
    # A cloud against itself (p2 is p1, the same lengths or none) stays one tensor, which the
    # CUDA search recognises (_tiles_into) and which is checked once.
    same = p2 is p1 and lengths2 is lengths1
    lengths1 = ck.check_lengths(op, "lengths1", lengths1, B, p1.shape[1], p1.device)
    lengths2 = lengths1 if same else ck.check_lengths(op, "lengths2", lengths2, B, p2.shape[1], p1.device)
    ck.check_finite(op, "p1", p1)
    if not same:
        ck.check_finite(op, "p2", p2)
    a = ck.as_float_input(p1)
    b = a if same else ck.as_float_input(p2)
    if a.dtype != b.dtype:  # mixed float32/float64: compute in float64
        a, b = a.double(), b.double()
    return a, b, lengths1, lengths2


def knn_points(
    p1: torch.Tensor,
    p2: torch.Tensor,
    lengths1: Optional[torch.Tensor] = None,
    lengths2: Optional[torch.Tensor] = None,
    K: int = 1,
    return_nn: bool = False,
    return_sorted: bool = True,
    *,
    norm: int = 2,
) -> KNN:
    """K nearest neighbours in p2 of every point of p1, per cloud.

    Args:
        p1: (B, P1, D) queries; p2: (B, P2, D) points; float32/float64 (half computed in float32).
        lengths1, lengths2: optional (B,) int64 valid sizes (pytorch3d padding convention).
        K: neighbours per query (any K >= 1; slots beyond the cloud size are padded).
        return_nn: also return the neighbour coordinates.
        return_sorted: accepted for pytorch3d compatibility; results are always sorted.
        norm: 2 (squared Euclidean, default) or 1 (L1), keyword-only.

    Returns:
        KNN(dists, idx, knn): dists (B, P1, K) in ascending order, ties by lower index; idx
        (B, P1, K) int64; knn (B, P1, K, D) or None. Padded slots have idx -1, dist 0, zero knn.
        dists is differentiable w.r.t. p1 and p2 (deterministic backward).
    """
    K = ck.check_positive_int(OP, "K", K)
    if norm not in (1, 2):
        raise ValueError(f"{OP}: norm must be 1 or 2, got {norm!r}")
    a, b, lengths1, lengths2 = _pair_inputs(OP, p1, p2, lengths1, lengths2)
    dists, idx = _knn(a, b, lengths1, lengths2, K, norm)
    nn = knn_gather(p2, idx, lengths2) if return_nn else None
    return KNN(dists, idx, nn)


def knn_gather(x: torch.Tensor, idx: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Gather features of neighbours: x (B, M, C), idx (B, L, K) -> (B, L, K, C).

    Index -1 (and, when `lengths` is given, slots k >= lengths[b], as in pytorch3d) give zeros.
    Differentiable w.r.t. x with a deterministic scatter-add backward.
    """
    op = "knn_gather"
    ck.check_tensor(op, "x", x, ndim=3, dtypes=ck.FLOAT_DTYPES + ck.HALF_DTYPES, shape_hint="(B, M, C)")
    ck.check_tensor(op, "idx", idx, ndim=3, dtypes=(torch.int64, torch.int32), shape_hint="(B, L, K)")
    ck.check_same_device(op, x=x, idx=idx)
    if idx.shape[0] != x.shape[0]:
        raise ValueError(f"{op}: x and idx must have the same batch size, got x {ck.shape_str(x)} and idx {ck.shape_str(idx)}")
    idx = idx.to(torch.int64)
    if ck.value_checks_enabled() and idx.numel():
        lo, hi = int(idx.min()), int(idx.max())
        if lo < -1 or hi >= x.shape[1]:
            raise ValueError(f"{op}: idx must lie in [-1, {x.shape[1] - 1}] (-1 = padding), got values in [{lo}, {hi}]")
    if lengths is not None:
        lengths = ck.check_lengths(op, "lengths", lengths, x.shape[0], x.shape[1], x.device)
        slot = torch.arange(idx.shape[2], device=idx.device)
        idx = torch.where(slot[None, None, :] < lengths[:, None, None], idx, idx.new_full((), -1))
    B, L, K = idx.shape
    if idx.numel() == 0 or x.shape[1] == 0:
        return x.new_zeros((B, L, K, x.shape[2]))
    feats = x.float() if x.dtype in ck.HALF_DTYPES else x
    return gather_rows(feats, idx.reshape(B, L * K)).reshape(B, L, K, x.shape[2]).to(x.dtype)
