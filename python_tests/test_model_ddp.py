"""Scale-out: 2 processes on CPU (gloo) under torchrun, sharded extraction, DDP training."""
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from model_utils import make_synth

ROOT = Path(__file__).resolve().parents[1]

DRIVER = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, {tests!r})
    import torch
    from model_utils import patch_extractors, tiny_config
    from mentor3ad_ext.train import TrainRun, run_training
    from mentor3ad_ext.train.distributed import DistContext

    torch.set_num_threads(1)
    ctx = DistContext.from_env("cpu")
    rgb, xyz = patch_extractors()
    cfg = tiny_config(train={{"epochs": 3, "mfm_epochs": 2, "batch_size": 2}})
    run = TrainRun(data={data!r}, out={out!r}, cache_dir={cache!r}, config=cfg,
                   extractors=(rgb, xyz), progress=False, overlays=0, preprocess_cache=False,
                   log=lambda m: None)
    res = run_training(run, dist_ctx=ctx)
    torch.save({{"world": ctx.world_size, "rank": ctx.rank, "extract_calls": rgb.calls,
                "checksum": res["classes"]["foam"]["heads_checksum"]}},
               os.path.join({out!r}, f"rank{{ctx.rank}}.pt"))
    ctx.close()
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_torchrun_two_cpu_processes(tmp_path):
    data = make_synth(tmp_path / "data", classes=("foam",), n_train=4, n_val=1, n_test=1, size=48,
                      defects=("bump",))
    out = tmp_path / "out"
    out.mkdir()
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(tests=str(ROOT / "python_tests"), data=str(data), out=str(out),
                                    cache=str(tmp_path / "cache")))
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(script)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ranks = [torch.load(out / f"rank{i}.pt", weights_only=True) for i in range(2)]
    assert all(x["world"] == 2 for x in ranks) and {x["rank"] for x in ranks} == {0, 1}
    # DDP kept the replicas identical (each rank trained on its own shard of every epoch)
    assert ranks[0]["checksum"] == ranks[1]["checksum"]
    # extraction was sharded: 4 train + 1 validation + 2 test samples, each extracted once
    assert sum(x["extract_calls"] for x in ranks) <= 7 and all(x["extract_calls"] >= 1 for x in ranks)
    from mentor3ad_ext.train.checkpoint import load_checkpoint

    ck = load_checkpoint(out / "checkpoints" / "foam.pt")
    assert ck["stage"] == "done" and "i_auroc" in ck["metrics"]
    hist = ck["history"]
    assert [h["stage"] for h in hist] == ["mfm", "mfm", "mgm", "mgm", "mgm"]
    res = json.loads((out / "results.json").read_text())
    assert res["world_size"] == 2
    assert not list(out.rglob("*.tmp"))
