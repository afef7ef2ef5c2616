import pytest
import torch

HAS_CUDA = torch.cuda.is_available()

# Every op test runs on these; the cuda entries skip cleanly without a GPU.
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")),
]
FLOAT_DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
