#!/usr/bin/env bash
# Prepares, on this (CPU) machine, what one device-tool call needs to run `gpu_check.sh all`
# without spending device minutes on a build: the CUDA extension compiled for the GPU machine's
# Python and architecture, and Open3D packed for the same-machine descriptor comparison.
#
#   bash scripts/prepare_gpu_run.sh            # Python 3.12, sm_90 (the lent H100/H200 machines)
#   PYTHON=/path/to/python3.X ARCHS=80 bash scripts/prepare_gpu_run.sh
#
# It prints the paths to carry and a command line for the call. The build uses this machine's
# nvcc; the GPU machine only needs a driver (the CUDA runtime is linked statically).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
PY=${PYTHON:-}
if [ -z "$PY" ]; then  # a python3.12 that runs (a pyenv shim may exist and fail)
  for c in python3.12 /root/.pyenv/versions/3.12.1/bin/python; do
    if "$c" -c "" 2>/dev/null; then PY=$c; break; fi
  done
fi
[ -n "$PY" ] || { echo "prepare_gpu_run: no Python 3.12 found; set PYTHON"; exit 1; }
ARCHS=${ARCHS:-90}
"$PY" -c "import pybind11, cmake, ninja" 2>/dev/null || "$PY" -m pip install -q pybind11 cmake ninja numpy setuptools wheel
MENTOR3AD_CUDA=1 MENTOR3AD_CUDA_ARCHS=$ARCHS MENTOR3AD_JOBS=${MENTOR3AD_JOBS:-2} \
  "$PY" setup.py build_ext --inplace > /tmp/prepare_gpu_build.log 2>&1 || { tail -30 /tmp/prepare_gpu_build.log; exit 1; }
so=$(cd "$repo" && ls mentor3ad_ext/_C.cpython-"$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')"-*.so)
ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
[ -f gpu_peers/open3d.tar.xz ] || bash scripts/pack_open3d_for_gpu.sh "$ver"
echo
echo "carry: [\"$so\", \"gpu_peers/open3d.tar.xz\"]  ($(du -ch "$so" gpu_peers/open3d.tar.xz | tail -1 | cut -f1) of the 64 MiB limit)"
echo "command (the whole check, ~9 minutes at most; narrow with TESTS, MEMCHECK, RACECHECK, BENCH):"
echo "  PYTHON=python3 PHASE1_S=150 bash scripts/gpu_check.sh all"
echo "what is still unmeasured (FPS incl. its resident path: the bench ran past 40 s on 2026-11-27; racecheck;"
echo "the shared-memory warp lists of 2026-11-27 and the radius-bounded search: FPFH's K = 100 search;"
echo "the normals kernel reading strided rows, 2026-11-27):"
echo "  PYTHON=python3 PHASE1_S=200 TESTS='python_tests/test_knn.py python_tests/test_fps.py python_tests/test_fpfh.py python_tests/test_normals.py' \\"
echo "    MEMCHECK='knn fpfh normals' RACECHECK='knn fps' BENCH='profile_knn:90 descriptors:60 profile_descriptors:40 fps:120' bash scripts/gpu_check.sh all"
