#!/usr/bin/env bash
# The GPU checks, for a session that is lent a GPU machine (the device tool; see README "GPU
# checks"). Each stage fits one call of at most 10 minutes; the build stays on a warm machine
# between calls, and the next stage rebuilds only if it is missing.
#
#   bash scripts/gpu_check.sh test       # build for this GPU, run the whole test suite (CUDA cases too)
#   bash scripts/gpu_check.sh sanitize   # compute-sanitizer memcheck + racecheck on each op's CUDA tests
#   bash scripts/gpu_check.sh bench      # GPU benchmarks; results JSON copied to $OUT
#
# Logs and results go to $OUT (the device tool's output folder; ./gpu_out elsewhere).
set -u -o pipefail
stage=${1:-test}
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

if ! nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1; then
  echo "gpu_check: no GPU here (nvidia-smi failed)"; exit 2
fi

build() {
  if $PY -c "import mentor3ad_ext as m, sys; sys.exit(0 if m.build_info()['cuda_devices'] > 0 else 1)" 2>/dev/null; then
    return 0
  fi
  local arch
  arch=$($PY -c "import torch; c = torch.cuda.get_device_capability(); print(f'{c[0]}{c[1]}')") || exit 1
  echo "gpu_check: building for sm_$arch"
  MENTOR3AD_CUDA=1 MENTOR3AD_CUDA_ARCHS=$arch MENTOR3AD_JOBS=$(nproc) \
    $PY setup.py build_ext --inplace > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
  $PY -c "import mentor3ad_ext as m; print(m.build_info())" | tee "$OUT/build_info.txt"
}

build
case "$stage" in
  test)
    $PY -m pytest python_tests -q -p no:cacheprovider -x 2>&1 | tee "$OUT/tests.log"
    ;;
  sanitize)
    # One process per op, its CUDA cases only; memcheck on all of them, racecheck (slow) on the
    # kernels with shared-memory reductions.
    rc=0
    for t in fps knn ball_query scatter interpolate interpolate_grid projection normals fpfh metrics; do
      compute-sanitizer --tool memcheck --error-exitcode 9 --log-file "$OUT/memcheck_$t.log" \
        $PY -m pytest "python_tests/test_$t.py" -q -p no:cacheprovider -k cuda > "$OUT/memcheck_$t.out" 2>&1
      r=$?; echo "memcheck $t: exit $r"; [ $r -eq 0 ] || rc=1
    done
    for t in fps knn metrics; do
      compute-sanitizer --tool racecheck --error-exitcode 9 --log-file "$OUT/racecheck_$t.log" \
        $PY -m pytest "python_tests/test_$t.py" -q -p no:cacheprovider -k "cuda and not property" > "$OUT/racecheck_$t.out" 2>&1
      r=$?; echo "racecheck $t: exit $r"; [ $r -eq 0 ] || rc=1
    done
    exit $rc
    ;;
  bench)
    $PY -m pytest bench/bench_fps.py bench/bench_knn.py bench/bench_ball_query.py \
      bench/bench_interpolate_grid.py bench/bench_metrics.py -q -p no:cacheprovider -k cuda 2>&1 | tail -30 | tee "$OUT/bench.log"
    $PY -m pytest bench/bench_projection.py -q -p no:cacheprovider 2>&1 | tail -12 | tee -a "$OUT/bench.log"  # CUDA when present
    $PY bench/bench_descriptors.py --device cuda 2>&1 | tail -10 | tee -a "$OUT/bench.log"
    $PY -m mentor3ad_ext.train.bench_model --device cuda 2>&1 | tail -20 | tee -a "$OUT/bench.log"
    # the results files written today (at most 7 come back with the log)
    find bench/results -name '*.json' -newer "$OUT/nvidia-smi.txt" | head -7 | xargs -r cp -t "$OUT"
    ls "$OUT"
    ;;
  *)
    echo "usage: bash scripts/gpu_check.sh test|sanitize|bench"; exit 2
    ;;
esac
