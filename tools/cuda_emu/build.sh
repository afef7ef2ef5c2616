#!/usr/bin/env bash
# Builds mentor3ad_ext/_C_emu*.so (the CUDA kernels under the host emulator) next to _C.
# Then: MENTOR3AD_CUDA_EMULATOR=1 pytest python_tests/...  (see README.md here).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="${MENTOR3AD_EMU_BUILD_DIR:-$repo/build/cuda-emu}"
python_exe="$(command -v python)"
# MENTOR3AD_EMU_BUILD_TYPE=RelWithDebInfo keeps symbols (sanitizer reports with file:line).
cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="${MENTOR3AD_EMU_BUILD_TYPE:-Release}" \
  -DPython_EXECUTABLE="$python_exe" \
  -Dpybind11_DIR="$("$python_exe" -m pybind11 --cmakedir)" \
  -DEMU_SANITIZE="${MENTOR3AD_EMU_SANITIZE:-}" \
  -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$repo/mentor3ad_ext" >/dev/null
# Sanitizer builds write the same file from their own build folders: relink this one's always.
rm -f "$repo"/mentor3ad_ext/_C_emu.*.so
cmake --build "$build" -j "${MENTOR3AD_JOBS:-2}"
