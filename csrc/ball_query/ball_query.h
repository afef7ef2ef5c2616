// Ball query (pytorch3d semantics): for each p1 point, the first K p2 points in index order whose
// squared distance is strictly below radius^2, with those squared distances. radius^2 is
// computed in double and rounded once to the input dtype. Unused slots: index -1, distance 0.
#pragma once
#include <cstdint>

#include "common/dtype.h"
#include "common/launch.h"
#include "common/pair_query.h"

namespace m3ad {

struct BallQueryParams : PairQuery {
  double radius2 = 0;
};

void ball_query_cpu(const BallQueryParams& p);
void ball_query_cuda(const BallQueryParams& p, const Device& dev);

}  // namespace m3ad
