#!/usr/bin/env bash
# The GPU checks, for a session that is lent a GPU machine (the device tool; see README "GPU
# checks"). Each stage fits one call of at most 10 minutes; the build stays on a warm machine
# between calls, and the next stage rebuilds only if it is missing.
#
#   bash scripts/gpu_check.sh test       # build for this GPU, run the whole test suite (CUDA cases too)
#   bash scripts/gpu_check.sh sanitize   # compute-sanitizer memcheck + racecheck on each op's CUDA tests
#   bash scripts/gpu_check.sh bench      # GPU benchmarks; results JSON copied to $OUT
#   bash scripts/gpu_check.sh all        # one call of ~8 minutes: CUDA tests and sanitizers side by
#                                        # side, then the benchmarks alone; every step time-boxed so
#                                        # that the logs come back (a session has 15 device minutes);
#                                        # TESTS (paths), MEMCHECK, RACECHECK (op names) and BENCH
#                                        # (name:seconds; also descriptors, model, profile_knn,
#                                        # profile_knn_dense, profile_gather, profile_metrics,
#                                        # profile_descriptors)
#                                        # narrow it for a rerun, e.g.
#                                        # TESTS=python_tests/test_metrics.py MEMCHECK=metrics
#                                        # RACECHECK=metrics BENCH="metrics:35 profile_metrics:120"
#                                        # (FUZZ=0: without the memcheck of the internal ops'
#                                        # mutation fuzz, python_tests/_op_fuzz.py, on CUDA)
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
# Open3D for the descriptor benchmarks, when carried (scripts/pack_open3d_for_gpu.sh): the peer
# then runs on this machine's cores instead of being compared from another machine.
if [ -f gpu_peers/open3d.tar.xz ] && ! $PY -c "import open3d" 2>/dev/null; then
  mkdir -p /tmp/gpu_peers && tar xJf gpu_peers/open3d.tar.xz -C /tmp/gpu_peers
  export PYTHONPATH=$PYTHONPATH:/tmp/gpu_peers
  # the packed system libraries this machine lacks (libGL on the H200 image), and only those
  syslibs=/tmp/gpu_peers/open3d/_syslibs
  for f in "$syslibs"/*; do
    [ -e "$f" ] && ldconfig -p | grep -q "$(basename "$f") " && rm -f "$f"
  done
  [ -d "$syslibs" ] && export LD_LIBRARY_PATH=$syslibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  $PY -c "import open3d; print('open3d', open3d.__version__)" | tee "$OUT/open3d.txt"
fi
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
    compute-sanitizer --tool memcheck --error-exitcode 9 --log-file "$OUT/memcheck_op_fuzz.log" \
      $PY python_tests/_op_fuzz.py 0 600 cuda > "$OUT/memcheck_op_fuzz.out" 2>&1
    r=$?; echo "memcheck op_fuzz: exit $r"; [ $r -eq 0 ] || rc=1
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
  all)
    # Phase 1, side by side (the GPU and 16 cores have room): the CUDA test cases, memcheck of each
    # op's CUDA cases, racecheck of the shared-memory reductions. Phase 2: benchmarks with nothing
    # else running. A step cut by its time box shows exit 124 in summary.txt.
    S=${PHASE1_S:-170}
    mkdir -p "$OUT/logs"
    # A process's first CUDA call: torch's context and cuBLAS, then our first op (the bench's first
    # case took over 3 s on the H200; the first custom-op call imports torch._dynamo: 1.6 s on CPU)
    $PY -c "
import time, torch
t = time.perf_counter(); a = torch.ones(64, 64, device='cuda'); (a @ a).sum().item(); t1 = time.perf_counter()
import mentor3ad_ext as m
t2 = time.perf_counter(); m.knn_points(a[None, :, :3], a[None, :, :3], K=2).dists.sum().item(); t3 = time.perf_counter()
m.sample_farthest_points(a[None, :, :3], K=4)[1].sum().item(); t4 = time.perf_counter()
print(f'first calls, s: torch context + cuBLAS {t1 - t:.2f}, our first kernel {t3 - t2:.2f}, a second op {t4 - t3:.3f}')
" 2>&1 | tee -a "$OUT/summary.txt"
    # -v: each result is logged as it lands, so a run cut by its time box still names its failures
    (timeout $S $PY -m pytest ${TESTS:-python_tests} -v -p no:cacheprovider -k cuda -n 6 -rfE \
       > "$OUT/logs/tests.log" 2>&1; echo "tests: exit $?" >> "$OUT/summary.txt") &
    for t in ${MEMCHECK-fps knn knn_self ball_query scatter interpolate interpolate_grid projection normals fpfh metrics}; do
      (timeout $S compute-sanitizer --tool memcheck --error-exitcode 9 --log-file "$OUT/logs/memcheck_$t.log" \
         $PY -m pytest "python_tests/test_$t.py" -q -p no:cacheprovider -k "cuda and not property" \
         > "$OUT/logs/memcheck_$t.out" 2>&1; echo "memcheck $t: exit $?" >> "$OUT/summary.txt") &
    done
    # The internal ops with mutated arguments on CUDA (python_tests/_op_fuzz.py): wrong shapes
    # are refused, garbage values must be clamped by the kernels; FUZZ=0 leaves it out.
    [ "${FUZZ-1}" = 1 ] && (timeout $S compute-sanitizer --tool memcheck --error-exitcode 9 \
       --log-file "$OUT/logs/memcheck_op_fuzz.log" $PY python_tests/_op_fuzz.py 0 600 cuda \
       > "$OUT/logs/memcheck_op_fuzz.out" 2>&1; echo "memcheck op_fuzz: exit $?" >> "$OUT/summary.txt") &
    for t in ${RACECHECK-fps knn knn_self metrics}; do
      (timeout $S compute-sanitizer --tool racecheck --error-exitcode 9 --log-file "$OUT/logs/racecheck_$t.log" \
         $PY -m pytest "python_tests/test_$t.py" -q -p no:cacheprovider -k "cuda and not property" \
         > "$OUT/logs/racecheck_$t.out" 2>&1; echo "racecheck $t: exit $?" >> "$OUT/summary.txt") &
    done
    wait
    tail -4 "$OUT/logs/tests.log"
    # name:seconds; the 1M-point FPS case (slow on CPU) is included on the GPU
    for nb in ${BENCH-fps:60 knn:40 ball_query:25 interpolate_grid:40 metrics:35 projection:30 descriptors:35 model:35}; do
      b=${nb%:*} s=${nb#*:} k=cuda
      case "$b" in
        descriptors) timeout $s $PY bench/bench_descriptors.py --device cuda --threads 16 ;;
        model) timeout $s $PY -m mentor3ad_ext.train.bench_model --device cuda ;;
        profile_knn) timeout $s $PY scripts/profile_knn_tiles.py ;;
        profile_metrics) timeout $s $PY scripts/profile_metrics.py ;;  # phase table of the metrics build
        profile_gather) timeout $s $PY scripts/profile_gather.py ;;  # warp-per-row vs tile gather kernels
        profile_knn_dense) timeout $s $PY scripts/profile_knn_dense.py ;;  # feature-space filter vs scan vs cdist
        profile_descriptors) timeout $s $PY scripts/profile_descriptors.py ;;  # normals/FPFH step by step
        *) [ "$b" = projection ] && k=""  # one device per run: CUDA when present
           MENTOR3AD_BENCH_FULL=1 MENTOR3AD_BENCH_TARGET_S=0.5 timeout $s $PY -m pytest bench/bench_$b.py -q \
             -p no:cacheprovider ${k:+-k $k} ;;
      esac > "$OUT/logs/bench_$b.log" 2>&1
      echo "bench $b: exit $?" >> "$OUT/summary.txt"
    done
    find bench/results -name '*.json' -newer "$OUT/nvidia-smi.txt" -exec cp -t "$OUT/logs" {} +
    tar czf "$OUT/logs.tgz" -C "$OUT" logs && rm -rf "$OUT/logs"
    cat "$OUT/summary.txt"
    ;;
  *)
    echo "usage: bash scripts/gpu_check.sh test|sanitize|bench|all"; exit 2
    ;;
esac
