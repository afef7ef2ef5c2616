"""Mutation fuzz of the internal ops (torch.ops.mentor3ad.*), run as a script by
test_malformed_calls.py so that a crash fails that test instead of killing pytest.

It records the calls that small public-op calls make to the internal ops, then replays them
with one or two arguments mutated: a dimension resized, added or dropped, another dtype, a
non-contiguous or expanded view, garbage values (NaN, inf, indices out of range, huge offsets),
other scalars. Every call must return or raise ValueError / TypeError (or an allocator error for
a size it was asked to allocate); a read out of bounds crashes the process, and under ASan or
compute-sanitizer it is reported. Prints the outcome counts as JSON.

    python python_tests/_op_fuzz.py SEED CALLS [DEVICE]

On a GPU, `compute-sanitizer --tool memcheck python python_tests/_op_fuzz.py 0 600 cuda` checks
the CUDA kernels the same way (scripts/gpu_check.sh all).
"""
import json
import math
import random
import sys

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import mentor3ad_ext as m
from mentor3ad_ext.ops._spatial import morton_frame

ALLOWED = (ValueError, TypeError)
ALLOCATOR = ("allocate", "overflowed", "bad_alloc")  # a huge size asked for, refused by the allocator


class Record(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "mentor3ad":
            keep = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
            self.calls.append((func, keep))
        return func(*args, **(kwargs or {}))


def public_calls(device):
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        def rand(*shape, scale=1.0, shift=0.0):
            return (torch.rand(*shape, generator=g) * scale + shift).to(device, dtype)

        def randn(*shape):
            return torch.randn(*shape, generator=g).to(device, dtype)

        def randint(lo, hi, shape):
            return torch.randint(lo, hi, shape, generator=g).to(device)

        p = rand(2, 60, 3)
        L = torch.tensor([60, 37], device=device)
        m.knn_points(p, p[:, :20], L, torch.tensor([20, 5], device=device), K=4)
        m.knn_points(rand(2, 9, 7), rand(2, 30, 7), K=3)
        m.ball_query(p, p, L, L, K=8, radius=0.3)
        m.sample_farthest_points(p, L, K=10)
        n = m.estimate_normals(p, L, k=10)
        m.estimate_normals(p, L, k=10, radius=0.3)
        m.fpfh(p, n, L, radius=0.4, max_nn=20)
        m.fpfh(p, n, L, max_nn=20)
        xyz = rand(2, 6, 7, 3)
        m.fpfh_organized(xyz, max_nn=12, normals_k=5)
        feats = randn(2, 60, 5).requires_grad_(True)
        m.interpolate_features(p[:, :10], p, feats, k=3, lengths_ref=L).sum().backward()
        cf = randn(2, 10, 4).requires_grad_(True)
        m.interpolate_to_grid(p[:, :10], cf, xyz, k=3, out_size=(3, 7)).sum().backward()
        x = randn(2, 60, 4).requires_grad_(True)
        idx = randint(-1, 60, (2, 5, 3))
        m.knn_gather(x, idx).sum().backward()
        m.weighted_gather(x, idx.clamp_min(0), rand(2, 5, 3)).sum().backward()
        for reduce in ("mean", "sum", "max"):
            f = randn(2, 30, 3).requires_grad_(True)
            m.points_to_grid(f, randint(-1, 20, (2, 30)), 4, 5, reduce=reduce).sum().backward()
        grid = randn(2, 3, 4, 5).requires_grad_(True)
        uv = rand(2, 9, 2, scale=6.0, shift=-1.0).requires_grad_(True)
        for mode in ("bilinear", "nearest"):
            m.grid_to_points(grid, uv, mode=mode).sum().backward()
        # Ops that only the CUDA routes call (the CPU ones search and order in one kernel).
        ops = torch.ops.mentor3ad
        ops.knn_within(p, p, L, L, 10, 0.09)
        ops.knn_within_idx(p, p, L, L, 10, 0.09)
        ops.morton_codes(p, L, *morton_frame(p, L))
        ops.knn_self(p, L, 10, 0.09, 0)
        if dtype == torch.float64:
            ops.knn_self(p, L, 20, math.inf, 3)  # the float32 filter


def mutate_tensor(r, t):
    c = r.random()
    if c < 0.2 and t.dim():  # one dimension resized
        d, n = r.randrange(t.dim()), r.choice([0, 1, 2, 3, 5, 64, 1000])
        part = t.narrow(d, 0, min(n, t.shape[d]))
        if n > t.shape[d]:
            shape = list(t.shape)
            shape[d] = n - t.shape[d]
            part = torch.cat([part, torch.zeros(shape, dtype=t.dtype, device=t.device)], d)
        return part
    if c < 0.3:  # a dimension added or dropped
        return t.reshape(-1) if t.dim() > 1 and r.random() < 0.5 else t[None]
    if c < 0.42:
        return t.to(r.choice([torch.int32, torch.int64, torch.float32, torch.float64, torch.bool, torch.float16]))
    if c < 0.5 and t.numel():  # a strided view
        return torch.stack([t, t], -1)[..., 0]
    if c < 0.55 and t.dim() and t.shape[0] == 1:  # an expanded view
        return t.expand(3, *t.shape[1:])
    if c < 0.9 and t.numel():  # garbage values
        t = t.contiguous().clone()
        flat = t.view(-1)
        for _ in range(r.choice([1, 1, 3])):
            i = r.randrange(flat.numel())
            if t.is_floating_point():
                flat[i] = r.choice([math.nan, math.inf, -math.inf, -1.0, 1e30])
            elif t.dtype in (torch.int32, torch.int64):
                info = torch.iinfo(t.dtype)
                flat[i] = r.choice([-1, -2, -7, 1, 59, 60, 61, 1000, info.max, info.min])
        return t
    return torch.empty(0, dtype=t.dtype, device=t.device)


def mutate_scalar(r, v):
    if isinstance(v, bool):
        return not v
    if isinstance(v, int):
        return r.choice([0, 1, -1, v + 1, v - 1, 1000])
    if isinstance(v, float):
        return r.choice([math.nan, math.inf, -math.inf, -1.0, 0.0])
    if isinstance(v, str):
        return r.choice(["bogus", "", "max", "sum", "mean"])
    if isinstance(v, list):
        return r.choice([[], [0.0], [math.nan] * 3, [0.0] * 4])
    return v


def main(seed: int, n: int, device: str = "cpu") -> None:
    rec = Record()
    with rec:
        public_calls(torch.device(device))
    r = random.Random(seed)
    counts, unexpected = {}, []
    for _ in range(n):
        func, args = r.choice(rec.calls)
        args = list(args)
        for _ in range(r.choice([1, 1, 1, 2])):
            j = r.randrange(len(args))
            args[j] = mutate_tensor(r, args[j]) if isinstance(args[j], torch.Tensor) else mutate_scalar(r, args[j])
        try:
            func(*args)
            key = "ok"
        except ALLOWED as e:
            key = type(e).__name__
        except (RuntimeError, MemoryError) as e:
            key = "allocator"
            if not any(w in str(e) for w in ALLOCATOR):
                unexpected.append(f"{func}: {type(e).__name__}: {str(e)[:200]}")
        op = str(func).split(".")[1]
        counts.setdefault(op, {}).setdefault(key, 0)
        counts[op][key] += 1
    recorded = sorted({str(f).split(".")[1] for f, _ in rec.calls})
    print(json.dumps({"recorded": recorded, "counts": counts, "unexpected": unexpected}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:4])
