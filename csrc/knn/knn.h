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
#include "common/pair_query.h"

namespace m3ad {

struct KnnParams : PairQuery {
  int norm = 2;         // 2: squared Euclidean, 1: L1
  int select_mode = 0;  // CUDA block-select path: KnnSelectMode (knn/knn_select.h), auto by size
};

void knn_cpu(const KnnParams& p);
void knn_cuda(const KnnParams& p, const Device& dev);

}  // namespace m3ad
