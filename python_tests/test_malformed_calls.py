"""Malformed calls get ValueError / TypeError, never a crash or a read out of bounds.

The internal ops (torch.ops.mentor3ad.*) are registered with torch.library, so anyone can call
them: their contracts (ops/_contract.py) refuse wrong shapes, dtypes and devices, and the kernels
clamp lengths, offsets and indices. The public ops are fuzzed too (_public_fuzz.py)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mentor3ad_ext as m  # noqa: F401  (registers the ops)

ops = torch.ops.mentor3ad
HERE = Path(__file__).resolve().parent


def _plan():
    """(index, offsets, order) of a 2 x 6 entry scatter to 4 rows."""
    index = torch.tensor([[0, 1, 1, 2, 3, -1], [3, 3, 0, 1, 2, 3]])
    offsets, order = ops.rows_plan(index, 4)
    return index, offsets, order


def _cloud(B=2, P=20, D=3):
    return torch.rand(B, P, D), torch.full((B,), P)


# Each of these crashed the process (segfault, or SIGFPE for a zero group) before the contracts.
CASES = [
    ("knn: batch sizes differ", lambda: ops.knn(torch.rand(2, 5, 3), torch.rand(0, 4, 3), torch.tensor([5, 5]),
                                                torch.tensor([4, 4]), 2, 2),
     ValueError, r"mentor3ad::knn: p2 must have shape \(B, P2, D\), got \(0, 4, 3\); B = 2 from p1"),
    ("ball_query: no coordinates", lambda: ops.ball_query(torch.rand(2, 5, 0), torch.rand(2, 5, 3),
                                                         torch.tensor([5, 5]), torch.tensor([5, 5]), 4, 0.3),
     ValueError, r"ball_query: p2 must have shape \(B, P2, D\), got \(2, 5, 3\); D = 0 from p1"),
    ("fps: no coordinates", lambda: ops.fps(torch.rand(2, 5, 0), torch.tensor([5, 5]), torch.tensor([2, 2]),
                                           torch.tensor([0, 0]), 2),
     ValueError, r"mentor3ad::fps: points needs D >= 1, got 0"),
    ("normals_search: k = 0", lambda: ops.normals_search(*_cloud(), 0, 0.09, True, [0.0, 0.0, 0.0]),
     ValueError, r"normals_search: k must be >= 1, got 0"),
    ("morton_order: lengths of no cloud", lambda: ops.morton_order(torch.rand(2, 5, 3), torch.zeros(0, dtype=torch.int64)),
     ValueError, r"morton_order: lengths must have shape \(B,\), got \(0,\); B = 2 from points"),
    ("pixel_corners: uv without coordinates", lambda: ops.pixel_corners(torch.rand(2, 9, 0), 4, 4, True, False),
     ValueError, r"pixel_corners: uv must have shape \(B, N, 2\), got \(2, 9, 0\)"),
    ("pixel_corners_backward: no gradient", lambda: ops.pixel_corners_backward(torch.rand(2, 9, 2), torch.zeros(0), 4, 5,
                                                                               False),
     ValueError, r"grad_weights must have shape \(B, 36\), got \(0,\)"),
    ("scatter_rows: offsets of another row count", lambda: ops.scatter_rows(
        torch.rand(2, 3, 5), *_plan(), 1000, "sum", None, False),
     ValueError, r"scatter_rows: offsets must have shape \(2001,\), got \(9,\)"),
    ("scatter_rows: more value rows than entries", lambda: ops.scatter_rows(
        torch.rand(2, 1000, 3), *_plan(), 4, "max", None, True),
     ValueError, r"scatter_rows: index's 6 entries per batch must be a multiple of values' 1000 rows"),
    ("scatter_max_backward: no argmax", lambda: ops.scatter_max_backward(
        torch.rand(2, 4, 3), torch.zeros(0, 4, 3, dtype=torch.int64), _plan()[0], 6),
     ValueError, r"argmax must have shape \(B, R, C\), got \(0, 4, 3\); B = 2 from grad"),
    ("rows_dot: group 0", lambda: ops.rows_dot(torch.rand(2, 9, 3), None, 0, torch.rand(2, 20, 3),
                                              torch.randint(-1, 15, (2, 9)), 1, 9),
     ValueError, r"rows_dot: a_group must be >= 1, got 0"),
    ("coalesce_rows: no weights", lambda: ops.coalesce_rows(torch.randint(0, 9, (2, 21, 6)), torch.zeros(0), 10, 6),
     ValueError, r"coalesce_rows: w must have shape \(B, R, E\), got \(0,\)"),
    ("fpfh_from_neighbors: normals of another cloud", lambda: ops.fpfh_from_neighbors(
        torch.rand(1, 30, 3), torch.rand(1, 29, 3), torch.zeros(1, 30, 4, dtype=torch.int64), torch.zeros(0),
        torch.arange(30)[None], -1.0),
     ValueError, r"normals must have shape \(B, P, 3\), got \(1, 29, 3\); P = 30 from points"),
    ("normals_from_neighbors: viewpoint of 2", lambda: ops.normals_from_neighbors(
        torch.rand(1, 30, 3), torch.zeros(1, 30, 4, dtype=torch.int64), torch.zeros(0), torch.arange(30)[None],
        -1.0, True, [0.0, 0.0]),
     ValueError, r"viewpoint must be 3 numbers, got \[0.0, 0.0\]"),
    ("gather_rows: group 0", lambda: ops.gather_rows(
        torch.rand(2, 4, 3), torch.zeros(2, 6, dtype=torch.int64), 0, None),
     ValueError, r"gather_rows: group must be >= 1, got 0"),
]


@pytest.mark.parametrize("name,call,exc,match", CASES, ids=[c[0] for c in CASES])
def test_malformed_calls_are_refused(name, call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_garbage_plans_read_nothing_out_of_bounds():
    # Values are not checked (that would cost a sync on CUDA): offsets past the plan's entries,
    # negative or descending, and entry ids out of range are clamped or skipped by the kernel.
    values = torch.rand(2, 3, 5, dtype=torch.float64)
    index, offsets, order = _plan()
    good, _ = ops.scatter_rows(values, index, offsets, order, 4, "sum", None, False)
    assert torch.isfinite(good).all()
    bad_offsets = offsets.clone()
    bad_offsets[[1, 3, 5]] = torch.tensor([2**40, -2**40, 7])
    bad_order = order.clone()
    bad_order[:4] = torch.tensor([2**40, -5, 6, 5])
    out, _ = ops.scatter_rows(values, index, bad_offsets, bad_order, 4, "sum", None, False)
    assert out.shape == good.shape and torch.isfinite(out).all()
    # Row (1, 3) (entries 0, 1 and 5 of cloud 1: order[9:12], offsets[7:9]) is untouched.
    torch.testing.assert_close(out[1, 3], good[1, 3], rtol=0, atol=0)


def _fuzz(script: str, seed: int, calls: int) -> dict:
    """Runs a fuzz script in a child process (a crash fails the test instead of killing pytest)
    and returns the JSON it prints."""
    run = subprocess.run([sys.executable, str(HERE / script), str(seed), str(calls)], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, f"the fuzz process died (rc {run.returncode}): {run.stderr[-2000:]}"
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("seed", [0, 1])
def test_mutated_calls_never_crash(seed):
    # Every internal op, replayed with mutated arguments. See _op_fuzz.py.
    result = _fuzz("_op_fuzz.py", seed, 1500)
    assert result["unexpected"] == []
    counts = result["counts"]
    # Every op the public calls reached (22 on the CPU kernels, 15 on the CUDA route) was
    # exercised ...
    assert len(result["recorded"]) >= 15 and sorted(counts) == result["recorded"], (sorted(counts), result["recorded"])
    for op, outcomes in counts.items():  # ... with calls that ran and calls that were refused
        assert outcomes.get("ok", 0) > 0 and outcomes.get("ValueError", 0) + outcomes.get("TypeError", 0) > 0, (op, outcomes)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_public_calls(seed):
    # Random calls of every public op (odd sizes, views, dtypes, values, checks on and off): a
    # result or ValueError / TypeError, and the result of the contiguous call. See _public_fuzz.py.
    result = _fuzz("_public_fuzz.py", seed, 600)
    assert result["unexpected"] == [] and result["mismatched"] == []
    counts = result["counts"]
    assert len(counts) == 17, sorted(counts)
    assert sum(c.get("ok", 0) for c in counts.values()) > 300  # of 2 x 600 calls: most ops ran
