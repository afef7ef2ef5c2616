// K nearest neighbours of every p1 point among the p2 points of the same cloud.
//
// Result contract (CPU and CUDA alike): for each valid query, the K nearest valid p2 points in
// ascending (distance, index) order, so equal distances go to the lower index. Distance is the
// squared Euclidean distance (norm 2) or the L1 distance (norm 1), summed over dims in index
// order without FMA. Slots past lengths2 and queries past lengths1 get index -1, distance 0.
#pragma once
#include <cstddef>
#include <cstdint>

#include "common/dtype.h"
#include "common/launch.h"

namespace m3ad {

struct KnnParams {
  const void* p1 = nullptr;          // (B, P1, D)
  const void* p2 = nullptr;          // (B, P2, D)
  const int64_t* lengths1 = nullptr; // (B,), clamped to [0, P1]
  const int64_t* lengths2 = nullptr; // (B,), clamped to [0, P2]
  void* dists = nullptr;             // (B, P1, K) output, input dtype
  int64_t* idx = nullptr;            // (B, P1, K) output
  int64_t B = 0, P1 = 0, P2 = 0, D = 0, K = 0;
  int norm = 2;
  DType dtype = DType::kFloat32;
};

void knn_cpu(const KnnParams& p);
void knn_cuda(const KnnParams& p, const Device& dev);

}  // namespace m3ad
