// CPU normals that search their own neighbourhoods: each point's K nearest go from the kNN's
// search (cell grid, else KD-tree) straight into the PCA, so the (B, P, K) neighbour lists are
// never written out and read back (that traffic was a fifth of estimate_normals at 100k points,
// K = 30). Neighbours and their order are those of knn_points, so the results are the same bits
// as the two-step path. With a radius the search stops at it (the PCA reads only that prefix).
#include <algorithm>
#include <limits>
#include <vector>

#include "common/kdtree.h"
#include "common/launch.h"
#include "common/parallel.h"
#include "knn/knn_grid.h"
#include "knn/topk_heap.h"
#include "knn/topk_sorted.h"
#include "knn/tree_query.h"
#include "normals/normal_from_neighbors.h"
#include "normals/normals.h"

namespace m3ad {
namespace {

template <typename T, typename Best, typename Row>
void tree_rows(const KdTree<T, 3>& tree, const T* cloud, int64_t n, int64_t K, T bound, const Row& row) {
  parallel_for(n, 64, [&](int64_t i0, int64_t i1) {
    Best best(K);
    std::vector<T> d(static_cast<size_t>(K));
    std::vector<int64_t> idx(static_cast<size_t>(K));
    for (int64_t i = i0; i < i1; ++i) {
      best.clear();
      tree_query<T, 3, 2>(tree, cloud + i * 3, best, strictly_below(bound));
      best.write_sorted(d.data(), idx.data());
      row(i, static_cast<const T*>(d.data()), static_cast<const int64_t*>(idx.data()));
    }
  });
}

template <typename T>
void run(const NormalsParams& p) {
  const bool use_radius = p.radius2 >= 0;
  const T r2 = static_cast<T>(p.radius2);
  const T bound = use_radius ? r2 : std::numeric_limits<T>::infinity();
  for_clouds(p.B, p.P, p.lengths, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const T* cloud = static_cast<const T*>(p.points) + b * p.P * 3;
      T* normals = static_cast<T*>(p.normals) + b * p.P * 3;
      T* curvature = p.curvature ? static_cast<T*>(p.curvature) + b * p.P : nullptr;
      const int64_t n = clamp_len(p.lengths, b, p.P);
      std::fill(normals + n * 3, normals + p.P * 3, T(0));  // padding points
      if (curvature) std::fill(curvature + n, curvature + p.P, T(0));
      if (n == 0) continue;
      const KdTree<T, 3> tree(cloud, n, kKnnLeaf);
      const auto row = [&](int64_t i, const T* d, const int64_t* idx, auto&&...) {  // (no packing cursor)
        normal_from_list<T>(cloud, n, idx, d, p.K, use_radius, r2, cloud + i * 3, p.orient, p.viewpoint,
                            normals + i * 3, curvature ? curvature + i : nullptr);
      };
      if (knn_grid_each<T, 2>(cloud, n, cloud, n, p.K, tree, row, bound)) continue;
      if (p.K <= kSortedMaxK) tree_rows<T, SortedTopK<T>>(tree, cloud, n, p.K, bound, row);
      else tree_rows<T, TopK<T>>(tree, cloud, n, p.K, bound, row);
    }
  });
}

}  // namespace

void normals_search_cpu(const NormalsParams& p) {
  dispatch_float(p.dtype, [&](auto tag) {
    run<decltype(tag)>(p);
    return 0;
  });
}

}  // namespace m3ad
