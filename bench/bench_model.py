"""End-to-end model benchmark: the 3D feature path and a training epoch, ``--ops fast`` vs
``--ops reference`` (see `mentor3ad_ext.train.bench_model`, which does the measuring).

Run: ``pytest bench/bench_model.py`` (minutes on 2 CPU cores).  Writes
``bench/results/<device>-<date>-model.json`` and checks the targets of the model issue: the 3D
path (grouping + interpolation + projection) at least 3x faster than the reference on CPU,
10x on GPU.  Outputs of both op sets are compared before anything is timed.
"""
from __future__ import annotations

import datetime
import json
import platform
from pathlib import Path

import pytest
import torch

from mentor3ad_ext.train.bench_model import format_table, run

RESULTS = Path(__file__).parent / "results"
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_model_3d_path_fast_vs_reference(device):
    res = run(device, n_images=4, repeat=3)
    print("\n" + format_table(res))
    res["host"] = {"platform": platform.platform(), "python": platform.python_version(),
                   "date": datetime.date.today().isoformat()}
    name = "cpu" if device == "cpu" else torch.cuda.get_device_name().lower().replace(" ", "-")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}-{datetime.date.today().isoformat()}-model.json").write_text(
        json.dumps(res, indent=2) + "\n")
    target = 3.0 if device == "cpu" else 10.0
    assert res["3d_path"]["speedup"] >= target
