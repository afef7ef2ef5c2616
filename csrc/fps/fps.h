// Farthest point sampling: the exact order of the textbook algorithm.
//
// Order contract (CPU and CUDA alike): the first sample is start[b]; each next sample is the
// not-yet-selected point whose squared distance to the selected set is largest, ties going to the
// lower index. Already-selected points are never picked again, so with duplicate points the
// remaining zero-distance points follow in index order. Distances are dx*dx + dy*dy + ... in the
// input precision, without FMA contraction, so both devices see identical values.
#pragma once
#include <cstddef>
#include <cstdint>

#include "common/dtype.h"
#include "common/launch.h"

namespace m3ad {

struct FpsParams {
  const void* points = nullptr;     // (B, P, D) contiguous
  const int64_t* lengths = nullptr; // (B,) valid points per cloud, clamped to [0, P]
  const int64_t* k = nullptr;       // (B,) samples per cloud, clamped to [0, K_max]
  const int64_t* start = nullptr;   // (B,) first sample, used modulo the cloud length
  int64_t* idx = nullptr;           // (B, K_max) output, -1 beyond min(k[b], lengths[b])
  void* workspace = nullptr;        // CUDA only: fps_cuda_workspace_bytes() bytes
  int64_t B = 0, P = 0, D = 0, K_max = 0;
  DType dtype = DType::kFloat32;
};

void fps_cpu(const FpsParams& p);
void fps_cuda(const FpsParams& p, const Device& dev);
size_t fps_cuda_workspace_bytes(int64_t B, int64_t P, DType dtype);

}  // namespace m3ad
