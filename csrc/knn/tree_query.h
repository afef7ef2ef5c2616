// One query's search of a KD-tree (common/kdtree.h): depth first, nearer child first, pruned
// by the box lower bound against the current K-th distance. Exact, ties included.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>

#include "common/kdtree.h"

namespace m3ad {

constexpr int kKnnMaxLeaf = 32;
constexpr int kKnnLeaf = 24;  // a kNN tree leaf holds at most kKnnLeaf points (<= kKnnMaxLeaf)

template <typename T>
struct KnnStackEntry {  // no initialiser: a zero-filled stack cost 7 % of a K = 30 search
  int32_t id;
  T bound;
};

// The `bound` of tree_query (which keeps distances <= it) that keeps exactly those < max_dist:
// a bounded search (knn_within_cpu) takes only neighbours strictly below its bound. Below 0
// that is a denormal, -4.9e-324: exact because the kernels always run in the IEEE mode
// (common/fp_mode.h); under a caller's denormals-are-zero mode it compared as -0, and distance 0
// passed the bound 0.
template <typename T>
T strictly_below(T max_dist) {
  return max_dist < std::numeric_limits<T>::infinity() ? std::nextafter(max_dist, -std::numeric_limits<T>::infinity())
                                                       : max_dist;
}

// `bound`: a known upper bound of the K-th distance (e.g. the K-th distance among any K points
// of the cloud), or +inf. Nodes farther than it are skipped from the start; points at or below
// it still compete, so the result is the same.
template <typename T, int D, int kNorm, typename Best>
void tree_query(const KdTree<T, D>& tree, const T* q, Best& heap,
                T bound = std::numeric_limits<T>::infinity()) {
  using Node = typename KdTree<T, D>::Node;
  const auto& nodes = tree.nodes();
  // (node, its lower bound); the nearer child is pushed last so it is searched first.
  KnnStackEntry<T> stack[128];
  int top = 0;
  stack[top++] = {0, tree.template box_dist<kNorm>(nodes[0], q)};
  // The current K-th distance, cached: `bound` until K pairs are in.
  T worst = bound;
  while (top) {
    const KnnStackEntry<T> e = stack[--top];
    if (e.bound > worst) continue;
    const Node& nd = nodes[e.id];
    if (nd.leaf()) {
      // Distances of the whole leaf first (a loop the compiler vectorises), then the few that
      // can enter.
      T d[kKnnMaxLeaf];
      const int64_t n = nd.end - nd.begin;
      const T* pts = tree.point(nd.begin);
      for (int64_t i = 0; i < n; ++i) d[i] = sqdist<T, D, kNorm>(pts + i * D, q);
      for (int64_t i = 0; i < n; ++i)
        if (d[i] <= worst) {
          heap.push(d[i], tree.original(nd.begin + i));
          if (heap.full()) worst = heap.worst();
        }
      continue;
    }
    const T bl = tree.template box_dist<kNorm>(nodes[nd.left], q);
    const T br = tree.template box_dist<kNorm>(nodes[nd.right], q);
    if (bl <= br) {
      stack[top++] = {nd.right, br};
      stack[top++] = {nd.left, bl};
    } else {
      stack[top++] = {nd.left, bl};
      stack[top++] = {nd.right, br};
    }
  }
}

}  // namespace m3ad
