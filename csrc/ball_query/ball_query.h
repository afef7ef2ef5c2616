// Ball query (pytorch3d semantics): for each p1 point, the first K p2 points in index order whose
// squared distance is strictly below radius^2, with those squared distances. radius^2 is
// computed in double and rounded once to the input dtype. Unused slots: index -1, distance 0.
#pragma once
#include <cstdint>

#include "common/dtype.h"
#include "common/launch.h"

namespace m3ad {

struct BallQueryParams {
  const void* p1 = nullptr;          // (B, P1, D)
  const void* p2 = nullptr;          // (B, P2, D)
  const int64_t* lengths1 = nullptr; // (B,)
  const int64_t* lengths2 = nullptr; // (B,)
  void* dists = nullptr;             // (B, P1, K) output
  int64_t* idx = nullptr;            // (B, P1, K) output
  int64_t B = 0, P1 = 0, P2 = 0, D = 0, K = 0;
  double radius2 = 0;
  DType dtype = DType::kFloat32;
};

void ball_query_cpu(const BallQueryParams& p);
void ball_query_cuda(const BallQueryParams& p, const Device& dev);

}  // namespace m3ad
