"""Random calls of the public ops, run as a script by test_malformed_calls.py (a crash then fails
that test instead of killing pytest): odd batch and cloud sizes (empty ones, points without
coordinates), strided and expanded views, every dtype, coincident, lattice, huge, tiny and
non-finite coordinates, ragged and out-of-range lengths, odd k / K / radii / sizes, value
checks on and off. Every call must return or raise ValueError / TypeError, and a call that
returns must give the result of the same call on contiguous copies. Prints JSON.

    python python_tests/_public_fuzz.py SEED CASES
"""
import json
import math
import random
import sys

import torch

import mentor3ad_ext as m

ALLOWED = (ValueError, TypeError)


def points(r, B, P, D=3, dtype=None):
    kind = r.random()
    if kind < 0.15:
        t = torch.zeros(B, P, D)  # all coincident
    elif kind < 0.3:
        t = torch.randint(-2, 3, (B, P, D)).float() * 0.5  # a lattice: ties everywhere
    elif kind < 0.38:
        t = torch.randn(B, P, D) * 1e30  # squared distances overflow float32
    elif kind < 0.45:
        t = torch.randn(B, P, D) * 1e-30
    else:
        t = torch.randn(B, P, D)
    if r.random() < 0.1 and t.numel():
        t.view(-1)[r.randrange(t.numel())] = r.choice([math.nan, math.inf, -math.inf])
    return view(r, t.to(dtype or r.choice([torch.float32, torch.float64])))


def view(r, t):
    """t's values, often through odd strides."""
    c = r.random()
    if c < 0.2 and t.dim() >= 2:
        wide = torch.zeros(*t.shape[:-1], t.shape[-1] * 2, dtype=t.dtype)
        wide[..., ::2] = t
        return wide[..., ::2]
    if c < 0.35 and t.dim() >= 2:
        return t.transpose(0, 1).contiguous().transpose(0, 1)
    if c < 0.45 and t.dim() and t.shape[0] == 1:
        return t.expand(*t.shape)
    return t


def lengths(r, B, P):
    c = r.random()
    if c < 0.4:
        return None
    if c < 0.75:
        return torch.randint(0, P + 1, (B,))
    if c < 0.85:
        return torch.randint(-3, P + 5, (B,))
    if c < 0.93:
        return torch.randint(0, P + 1, (B,), dtype=torch.int32)
    return torch.randint(0, P + 1, (B + 1,))


def count(r, huge=False):
    """A neighbour count or size, sometimes of the wrong type or sign (2**31 only for the ops
    whose output does not hold the neighbours: they cap it at the cloud size)."""
    return r.choice([0, 1, 2, 3, 5, 16, 30, 33, 100, 257, -1, 2.5, True] + ([2**31] if huge else []))


def uv_dtype(t):
    return t.dtype if t.dtype in (torch.float32, torch.float64) else torch.float32


def case(r):
    """(name, function, args, kwargs) of one random call."""
    B = r.choice([0, 1, 1, 2, 3])
    P = r.choice([0, 1, 2, 3, 4, 7, 40, 200])
    op = r.choice(["knn", "ball", "fps", "group", "normals", "normals_org", "fpfh", "fpfh_org", "interp",
                   "gather", "wgather", "interp_grid", "p2g", "g2p", "metrics"])
    if op == "knn":
        D = r.choice([0, 1, 2, 3, 3, 3, 5, 30])
        p1, p2 = points(r, B, r.choice([P, 1, 5]), D), points(r, B, P, D)
        if r.random() < 0.2:
            p2 = p2.to(r.choice([torch.float32, torch.float64, torch.float16, torch.bfloat16]))
        return op, m.knn_points, [p1, p2, lengths(r, B, p1.shape[1]), lengths(r, B, P), count(r)], dict(
            return_nn=r.random() < 0.5, return_sorted=r.random() < 0.8, norm=r.choice([1, 2, 2, 3]))
    if op == "ball":
        p1, p2 = points(r, B, r.choice([P, 3]), r.choice([3, 3, 0, 2])), points(r, B, P, 3)
        return op, m.ball_query, [p1, p2, lengths(r, B, p1.shape[1]), lengths(r, B, P), count(r)], dict(
            radius=r.choice([0.0, 0.3, 1.0, 1e9, -1.0, math.nan, math.inf]), return_nn=r.random() < 0.5)
    if op == "fps":
        K = count(r) if r.random() < 0.7 else torch.randint(-1, P + 2, (B,))
        return op, m.sample_farthest_points, [points(r, B, P, r.choice([3, 3, 2, 6, 0])), lengths(r, B, P), K], dict(
            start_idx=r.choice([0, 1, P, -1, P + 1]))
    if op == "group":
        return op, m.group_points, [points(r, B, P, 3), r.choice([0, 1, 4, 64, -1]), r.choice([0, 1, 8, 32, -2])], dict(
            lengths=lengths(r, B, P))
    if op == "normals":
        pts = points(r, B, P, r.choice([3, 3, 3, 2]), r.choice([torch.float32, torch.float64, torch.float16, torch.bfloat16]))
        return op, m.estimate_normals, [pts, lengths(r, B, P), count(r, huge=True)], dict(
            radius=r.choice([None, None, 0.5, 0.0, -1.0, math.nan]), orient=r.choice(["viewpoint", "direction", None, "x"]),
            direction=r.choice([(0, 0, 1), (0, 0, 0), (1, 2), (math.nan, 0, 1)]), return_curvature=r.random() < 0.3)
    if op in ("normals_org", "fpfh_org"):
        H, W = r.choice([0, 1, 3, 8]), r.choice([0, 1, 5, 9])
        xyz = view(r, points(r, B * H, W, 3).contiguous().reshape(B, H, W, 3))
        valid = None if r.random() < 0.5 else view(r, torch.rand(B, H, W) < 0.7)
        if op == "normals_org":
            return op, m.estimate_normals_organized, [xyz, valid, count(r, huge=True)], {}
        nrm = None if r.random() < 0.6 else view(r, points(r, B * H, W, 3).contiguous().reshape(B, H, W, 3))
        return op, m.fpfh_organized, [xyz, nrm, valid, r.choice([None, 0.5, 2.0])], dict(
            max_nn=r.choice([1, 5, 40, 2**31]), normals_k=r.choice([1, 3, 20, 2**31]), normals_radius=r.choice([None, 0.4]))
    if op == "fpfh":
        pts = points(r, B, P, 3)
        nrm = points(r, B, P, r.choice([3, 3, 3, 2]), r.choice([pts.dtype, pts.dtype, torch.float64, torch.float16]))
        return op, m.fpfh, [pts, nrm, lengths(r, B, P)], dict(
            radius=r.choice([None, 0.3, 1.0, 0.0, -2.0]), max_nn=count(r, huge=True))
    if op == "interp":
        q, ref = points(r, B, r.choice([P, 5]), 3), points(r, B, P, 3)
        feat = view(r, torch.randn(B, P, r.choice([0, 1, 4]), dtype=r.choice([ref.dtype, torch.float16])))
        return op, m.interpolate_features, [q, ref, feat, count(r, huge=True)], dict(
            lengths_query=lengths(r, B, q.shape[1]), lengths_ref=lengths(r, B, P), power=r.choice([1.0, 2.0, 0.0, -1.0]),
            eps=r.choice([1e-8, 0.0]))
    if op in ("gather", "wgather"):
        x = view(r, torch.randn(B, P, r.choice([1, 3])).to(r.choice([torch.float32, torch.float64, torch.float16])))
        idx = torch.randint(-2, P + 2, (B, r.choice([0, 4]), r.choice([1, 3])))
        if op == "gather":
            return op, m.knn_gather, [x, idx.int() if r.random() < 0.3 else idx, lengths(r, B, P)], {}
        w = view(r, torch.randn(*idx.shape, dtype=r.choice([x.dtype, torch.float64])))
        return op, m.weighted_gather, [x, idx, w], {}
    if op == "interp_grid":
        G, H, W = r.choice([0, 1, 5]), r.choice([1, 4]), r.choice([1, 6])
        centers = points(r, B, G, 3)
        cf = view(r, torch.randn(B, G, r.choice([1, 4]), dtype=centers.dtype))
        xyz = view(r, points(r, B * H, W, 3, centers.dtype).contiguous().reshape(B, H, W, 3))
        valid = None if r.random() < 0.5 else torch.rand(B, H, W) < 0.5
        return op, m.interpolate_to_grid, [centers, cf, xyz, valid, count(r, huge=True)], dict(
            out_size=r.choice([None, (2, 3), (0, 1), 5, (-1, 2)]), lengths_centers=lengths(r, B, G))
    if op == "p2g":
        N, H, W = r.choice([0, 1, 10]), r.choice([0, 1, 4]), r.choice([1, 5, -1])
        feat = view(r, torch.randn(B, N, r.choice([1, 3])).to(r.choice([torch.float32, torch.float64, torch.bfloat16])))
        pix = torch.randint(-2, max(H * max(W, 1), 1) + 2, (B, N))
        return op, m.points_to_grid, [feat, pix, H, W], dict(
            reduce=r.choice(["mean", "sum", "max", "min"]), return_counts=r.random() < 0.3)
    if op == "g2p":
        grid = view(r, torch.randn(B, r.choice([1, 3]), r.choice([0, 1, 4]), r.choice([1, 5])).to(
            r.choice([torch.float32, torch.float64, torch.float16])))
        uv = view(r, (torch.rand(B, r.choice([0, 1, 9]), 2) * 3 - 1).to(uv_dtype(grid)))
        if r.random() < 0.1 and uv.numel():
            uv = uv.clone()
            uv.view(-1)[0] = math.nan
        return op, m.grid_to_points, [grid, uv], dict(mode=r.choice(["bilinear", "nearest", "bicubic"]),
                                                       align_corners=r.random() < 0.5)
    N, H, W = r.choice([0, 1, 3]), r.choice([0, 1, 6]), r.choice([1, 7])
    maps = view(r, torch.rand(N, H, W).to(r.choice([torch.float32, torch.float64, torch.float16])))
    if r.random() < 0.1 and maps.numel():
        maps = maps.clone()
        maps.view(-1)[0] = r.choice([math.nan, math.inf])
    gts = view(r, (torch.rand(N, H, W) < 0.2).to(r.choice([torch.bool, torch.uint8, torch.float32, torch.int64])))
    fn = r.choice([m.aupro, m.pixel_auroc, m.evaluate])
    return fn.__name__, fn, [maps, gts], {}


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and torch.equal(
            a.nan_to_num() if a.is_floating_point() else a, b.nan_to_num() if b.is_floating_point() else b)
    if isinstance(a, (tuple, list)):
        return all(x is None or same(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)


def main(seed: int, n: int) -> None:
    r = random.Random(seed)
    torch.manual_seed(seed)
    counts, unexpected, mismatched = {}, [], []
    for _ in range(n):
        name, fn, args, kwargs = case(r)
        for checks in (True, False):
            try:
                with m.value_checks(checks):
                    out = fn(*args, **kwargs)
                key = "ok"
            except ALLOWED as e:
                key = type(e).__name__
            except Exception as e:  # noqa: BLE001
                key = "unexpected"
                unexpected.append(f"{name}: {type(e).__name__}: {str(e)[:200]}")
            counts.setdefault(name, {}).setdefault(key, 0)
            counts[name][key] += 1
            if key == "ok" and checks:
                flat = [a.contiguous() if isinstance(a, torch.Tensor) else a for a in args]
                if not same(out, fn(*flat, **kwargs)):
                    mismatched.append(f"{name}: a strided call differs from the contiguous one")
    print(json.dumps({"counts": counts, "unexpected": unexpected, "mismatched": mismatched}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
