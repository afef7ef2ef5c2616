// The common shape of the neighbour searches (kNN, ball query): queries p1 against points p2 of
// the same cloud, K result slots per query.
#pragma once
#include <cstdint>

#include "common/dtype.h"

namespace m3ad {

struct PairQuery {
  const void* p1 = nullptr;          // (B, P1, D)
  const void* p2 = nullptr;          // (B, P2, D)
  const int64_t* lengths1 = nullptr; // (B,), clamped to [0, P1]
  const int64_t* lengths2 = nullptr; // (B,), clamped to [0, P2]
  void* dists = nullptr;             // (B, P1, K) output, input dtype
  int64_t* idx = nullptr;            // (B, P1, K) output
  int64_t B = 0, P1 = 0, P2 = 0, D = 0, K = 0;
  DType dtype = DType::kFloat32;
};

}  // namespace m3ad
