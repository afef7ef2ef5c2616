// A static KD-tree over one cloud, shared by the CPU neighbour searches (kNN, ball query, FPS).
//
// Exactness: a node's lower bound (box_dist) uses the same float operations, in the same order,
// as the point distances (sqdist). Rounding is monotonic, so box_dist never exceeds the computed
// distance of any point inside the box: pruning on it can never change a result, ties included.
#pragma once
#include <algorithm>
#include <cstdlib>
#include <cstdint>
#include <limits>
#include <memory>
#include <new>
#include <numeric>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "common/launch.h"
#include "common/parallel.h"
#include "common/select_nth.h"

namespace m3ad {

// Squared Euclidean (kNorm == 2) or L1 (kNorm == 1) distance, summed over dims in index order.
template <typename T, int kNorm>
inline T axis_term(T diff) {
  if (kNorm == 1) return diff < 0 ? -diff : diff;
  return diff * diff;
}

template <typename T, int D, int kNorm = 2>
inline T sqdist(const T* a, const T* b) {
  T d = axis_term<T, kNorm>(a[0] - b[0]);
  for (int j = 1; j < D; ++j) d = d + axis_term<T, kNorm>(a[j] - b[j]);
  return d;
}

template <typename T, int D>
class KdTree {
 public:
  static constexpr int kLeafSize = 16;

  struct Node {
    T lo[D], hi[D];
    int64_t begin, end;  // range in tree order
    int64_t min_index;   // smallest original index below the node
    int32_t left = -1, right = -1, parent = -1;
    bool leaf() const { return left < 0; }
  };

  // pts: n points of D coordinates, point i at pts + i * stride * D (stride > 1: every
  // stride-th point of a larger cloud, without copying it out first).
  KdTree(const T* pts, int64_t n, int leaf_size = kLeafSize, int64_t stride = 1) : leaf_size_(leaf_size) {
    // Partition a contiguous copy of (coordinates, index) records: far fewer cache misses
    // than partitioning indices into the caller's array.
    if (n > std::numeric_limits<int32_t>::max())
      throw std::invalid_argument("mentor3ad_ext: a single cloud may hold at most 2^31 - 1 points on the CPU");
    order_.resize(n);
    if (n == 0) return;
    // One block holds the records during the build and then the coordinates, rewritten in place
    // front to back (a record is larger than its coordinates, so the coordinates of record i never
    // reach record i + 1) and the block shrunk to them: a build peaks at the records plus the
    // 4-byte indices (20 bytes per float point), not records plus separate copies (32).
    block_.reset(std::malloc(sizeof(Rec) * static_cast<size_t>(n)));
    if (!block_) throw std::bad_alloc();
    unsigned char* raw = static_cast<unsigned char*>(block_.get());
    for (int64_t i = 0; i < n; ++i) {
      Rec* r = new (raw + i * sizeof(Rec)) Rec;
      for (int j = 0; j < D; ++j) r->c[j] = pts[i * stride * D + j];
      r->index = static_cast<int32_t>(i);
    }
    Rec* recs = std::launder(reinterpret_cast<Rec*>(raw));
    nodes_.resize(static_cast<size_t>(subtree_nodes(n)));
    build_parallel(recs, n);
    for (int64_t i = 0; i < n; ++i) {
      const Rec r = recs[i];
      order_[i] = r.index;
      for (int j = 0; j < D; ++j) new (raw + (i * D + j) * sizeof(T)) T(r.c[j]);
    }
    if (void* smaller = std::realloc(block_.get(), sizeof(T) * D * static_cast<size_t>(n))) {
      block_.release();
      block_.reset(smaller);
    }
    coords_ = std::launder(static_cast<T*>(block_.get()));
    // Children come after their parent, so a reverse sweep sees children first.
    for (int64_t id = static_cast<int64_t>(nodes_.size()) - 1; id >= 0; --id) {
      Node& nd = nodes_[id];
      if (nd.leaf()) {
        nd.min_index = *std::min_element(order_.begin() + nd.begin, order_.begin() + nd.end);
      } else {
        nd.min_index = std::min(nodes_[nd.left].min_index, nodes_[nd.right].min_index);
      }
    }
  }

  bool empty() const { return nodes_.empty(); }
  const std::vector<Node>& nodes() const { return nodes_; }
  // Original index of the point at tree position i, and its coordinates.
  int64_t original(int64_t i) const { return order_[i]; }
  const T* point(int64_t i) const { return coords_ + i * D; }
  // For a caller that takes over the per-point arrays (FPS): the original indices (moved out:
  // original() must not be called afterwards) and the coordinates in tree order, which it may
  // rearrange within each leaf (point() then no longer applies).
  std::vector<int32_t> take_order() { return std::move(order_); }
  T* mutable_points() { return coords_; }

  // Lower bound of the distance from q to any point inside the node's box.
  template <int kNorm = 2>
  T box_dist(const Node& nd, const T* q) const {
    T acc = 0;
    for (int j = 0; j < D; ++j) {
      T g = 0;
      if (q[j] < nd.lo[j]) g = nd.lo[j] - q[j];
      else if (q[j] > nd.hi[j]) g = q[j] - nd.hi[j];
      acc = j == 0 ? axis_term<T, kNorm>(g) : acc + axis_term<T, kNorm>(g);
    }
    return acc;
  }

 private:
  // 32-bit indices keep a float record at 16 bytes: a median selection moves a third less memory.
  struct Rec {
    T c[D];
    int32_t index;
  };

  struct Box {
    T lo[D], hi[D];
  };

  struct Task {
    int64_t b, e;
    int32_t id, parent;
    Box box;
  };

  // Median splits make the tree's shape a function of sizes alone, so node ids are known in
  // advance (pre-order: left child id + 1, right child after the whole left subtree) and
  // subtrees can be built concurrently into their own slots. The result is the same for any
  // number of threads.
  int64_t subtree_nodes(int64_t n) const {
    if (n <= leaf_size_) return 1;
    return 1 + subtree_nodes(n / 2) + subtree_nodes(n - n / 2);
  }


  // Split axes come from "loose" boxes (the parent's box cut at the split value, no scan); the
  // tight boxes used for pruning are computed bottom-up once the records are in place. Each
  // level therefore costs one median selection, not an extra min/max scan of every point.

  void build_parallel(Rec* recs, int64_t n) {
    Box root;
    for (int j = 0; j < D; ++j) root.lo[j] = root.hi[j] = recs[0].c[j];
    for (int64_t i = 1; i < n; ++i)
      for (int j = 0; j < D; ++j) {
        root.lo[j] = std::min(root.lo[j], recs[i].c[j]);
        root.hi[j] = std::max(root.hi[j], recs[i].c[j]);
      }
    // Split serially, breadth first, until there is enough independent work for every thread.
    std::vector<Task> tasks{{0, n, 0, -1, root}};
    // Trees below 4k points build faster on one thread than it takes to wake a second one
    // (16k points: 10 % faster FPS with the parallel build, under either OMP_WAIT_POLICY).
    const size_t want = n < (int64_t{1} << 12) ? 1 : static_cast<size_t>(4 * get_num_threads());
    // The tasks of one level are independent (disjoint ranges and nodes): from the second level
    // on they split in parallel, so only the root's partition runs on one thread.
    while (tasks.size() < want && n > 64 * leaf_size_) {
      const int64_t nt = static_cast<int64_t>(tasks.size());
      std::vector<Task> next(static_cast<size_t>(2 * nt));
      std::vector<char> was_split(static_cast<size_t>(nt), 0);
      parallel_for(nt, 1, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          const Task& t = tasks[i];
          if (t.e - t.b <= 16 * leaf_size_) {
            next[2 * i] = t;
            continue;
          }
          was_split[i] = split(recs, t, &next[2 * i], &next[2 * i + 1]);
        }
      });
      std::vector<Task> level;
      bool split_any = false;
      for (int64_t i = 0; i < nt; ++i) {
        level.push_back(next[2 * i]);
        if (was_split[i]) level.push_back(next[2 * i + 1]), split_any = true;
      }
      tasks.swap(level);
      if (!split_any) break;
    }
    parallel_for(static_cast<int64_t>(tasks.size()), 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) build(recs, tasks[t]);
    });
    // Tight boxes: leaves scan their own records (in parallel), parents take the union.
    parallel_for(static_cast<int64_t>(nodes_.size()), std::max<int64_t>(256, (int64_t{1} << 17) / leaf_size_),
                 [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        Node& nd = nodes_[i];
        if (!nd.leaf()) continue;
        for (int j = 0; j < D; ++j) nd.lo[j] = nd.hi[j] = recs[nd.begin].c[j];
        for (int64_t k = nd.begin + 1; k < nd.end; ++k)
          for (int j = 0; j < D; ++j) {
            nd.lo[j] = std::min(nd.lo[j], recs[k].c[j]);
            nd.hi[j] = std::max(nd.hi[j], recs[k].c[j]);
          }
      }
    });
    for (int64_t i = static_cast<int64_t>(nodes_.size()) - 1; i >= 0; --i) {
      Node& nd = nodes_[i];
      if (nd.leaf()) continue;
      const Node& a = nodes_[nd.left];
      const Node& b = nodes_[nd.right];
      for (int j = 0; j < D; ++j) {
        nd.lo[j] = std::min(a.lo[j], b.lo[j]);
        nd.hi[j] = std::max(a.hi[j], b.hi[j]);
      }
    }
  }

  // Fills node t.id; when it is not a leaf, partitions its records at the median of the loose
  // box's widest axis and describes the two children.
  bool split(Rec* recs, const Task& t, Task* left, Task* right) {
    Node& nd = nodes_[t.id];
    nd.begin = t.b;
    nd.end = t.e;
    nd.parent = t.parent;
    nd.left = nd.right = -1;
    if (t.e - t.b <= leaf_size_) return false;
    int axis = 0;
    for (int j = 1; j < D; ++j)
      if (t.box.hi[j] - t.box.lo[j] > t.box.hi[axis] - t.box.lo[axis]) axis = j;
    const int64_t mid = t.b + (t.e - t.b) / 2;
    select_nth(recs + t.b, recs + mid, recs + t.e, [axis](const Rec& x) { return x.c[axis]; });
    const T cut = recs[mid].c[axis];
    const int32_t l = t.id + 1;
    const int32_t r = static_cast<int32_t>(l + subtree_nodes(mid - t.b));
    nd.left = l;
    nd.right = r;
    *left = {t.b, mid, l, t.id, t.box};
    *right = {mid, t.e, r, t.id, t.box};
    left->box.hi[axis] = cut;
    right->box.lo[axis] = cut;
    return true;
  }

  void build(Rec* recs, const Task& t) {
    Task l, r;
    if (!split(recs, t, &l, &r)) return;
    build(recs, l);
    build(recs, r);
  }

  struct Free {
    void operator()(void* p) const { std::free(p); }
  };

  int leaf_size_;
  std::vector<int32_t> order_;  // clouds hold < 2^31 points (checked)
  std::unique_ptr<void, Free> block_;
  T* coords_ = nullptr;  // in block_: n points of D coordinates, tree order
  std::vector<Node> nodes_;
};

// One tree per cloud of a padded (B, P, D) batch (cloud b holds clamp_len(lengths, b, P)
// points), built in parallel over clouds.
template <typename T, int D>
std::vector<std::unique_ptr<KdTree<T, D>>> build_trees(const T* points, const int64_t* lengths, int64_t B,
                                                        int64_t P, int leaf_size) {
  std::vector<std::unique_ptr<KdTree<T, D>>> trees(static_cast<size_t>(B));
  parallel_for(B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      trees[b] = std::make_unique<KdTree<T, D>>(points + b * P * D, clamp_len(lengths, b, P), leaf_size);
  });
  return trees;
}

// The dimensions the kNN and ball-query tree searches are built for. On uniform points the kNN
// tree beat the feature-space filter up to D = 8 and lost from D = 10 (csrc/knn/knn_cpu.cpp);
// the ball query's tree beat its scan wherever balls hold fewer than K points
// (csrc/ball_query/ball_query_cpu.cpp). Higher D scans.
constexpr int kTreeMaxDim = 8;

// Calls f(std::integral_constant<int, D>{}) and returns true for 1 <= D <= kTreeMaxDim; false
// (f not called) otherwise.
template <typename F>
bool with_tree_dim(int64_t D, F&& f) {
  static_assert(kTreeMaxDim == 8, "one case per dimension");
  switch (D) {
    case 1: f(std::integral_constant<int, 1>{}); return true;
    case 2: f(std::integral_constant<int, 2>{}); return true;
    case 3: f(std::integral_constant<int, 3>{}); return true;
    case 4: f(std::integral_constant<int, 4>{}); return true;
    case 5: f(std::integral_constant<int, 5>{}); return true;
    case 6: f(std::integral_constant<int, 6>{}); return true;
    case 7: f(std::integral_constant<int, 7>{}); return true;
    case 8: f(std::integral_constant<int, 8>{}); return true;
    default: return false;
  }
}

}  // namespace m3ad
