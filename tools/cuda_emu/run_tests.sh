#!/usr/bin/env bash
# Tests of the CUDA host emulator itself: tests/test_emulator.cu (kernels in CUDA syntax, run
# through translate.py and compiled with emu_runtime.cpp) and tests/test_cub_shims.cpp (the
# CUB/Thrust shims). Works from any directory; exits nonzero if anything fails to build or run.
# Uses $CXX if set (default g++) and $PYTHON if set (default python3, else python).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cxx="${CXX:-g++}"
py="${PYTHON:-$(command -v python3 || command -v python)}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

flags=(-std=c++17 -O1 -Wall -Wno-unknown-pragmas -I"$here/include")

"$py" "$here/translate.py" "$here/tests/test_emulator.cu" "$tmp/test_emulator.cpp"

# Build both at once (2 cores), then report each.
"$cxx" "${flags[@]}" -pthread "$tmp/test_emulator.cpp" "$here/emu_runtime.cpp" -o "$tmp/test_emulator" &
pid_emu=$!
"$cxx" "${flags[@]}" "$here/tests/test_cub_shims.cpp" -o "$tmp/test_cub_shims" &
pid_cub=$!
build_ok=1
wait "$pid_emu" || { echo "run_tests.sh: building test_emulator failed" >&2; build_ok=0; }
wait "$pid_cub" || { echo "run_tests.sh: building test_cub_shims failed" >&2; build_ok=0; }
[[ $build_ok == 1 ]] || exit 1

status=0
# The timeout turns an emulator hang (e.g. an undetected deadlock) into a failure.
if timeout 120 "$tmp/test_emulator"; then
  echo "run_tests.sh: test_emulator passed"
else
  echo "run_tests.sh: test_emulator FAILED (exit $?)" >&2
  status=1
fi
if timeout 120 "$tmp/test_cub_shims"; then
  echo "run_tests.sh: test_cub_shims passed"
else
  echo "run_tests.sh: test_cub_shims FAILED (exit $?)" >&2
  status=1
fi
exit "$status"
