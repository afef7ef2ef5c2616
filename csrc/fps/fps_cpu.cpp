// CPU FPS. For D == 3 a KD-tree prunes the distance updates while keeping the exact order
// (the QuickFPS / bucket-FPS idea): every node stores the largest current min-distance of the
// points below it; a new sample can lower a point's min-distance only if the squared distance
// from the sample to the node's bounding box is below that node maximum, so all other nodes are
// skipped. The box bound uses the same float operations as the point distances, and rounding is
// monotonic, so the bound never exceeds a true point distance: pruning never changes a result.
// Other D use the plain O(N*K) scan. Clouds run in parallel.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "common/parallel.h"
#include "fps/fps.h"

namespace m3ad {
namespace {

constexpr int kLeafSize = 32;

// Larger value wins; equal values go to the lower original index.
template <typename T>
inline bool better(T v, int64_t i, T best_v, int64_t best_i) {
  return v > best_v || (v == best_v && i < best_i);
}

inline int64_t clamp_len(const int64_t* a, int64_t b, int64_t hi) {
  return a ? std::min<int64_t>(std::max<int64_t>(a[b], 0), hi) : hi;
}

template <typename T>
inline T sq(T v) { return v * v; }

template <typename T>
class KdFps {
 public:
  KdFps(const T* pts, int64_t n) : n_(n) {
    order_.resize(n);
    std::iota(order_.begin(), order_.end(), int64_t{0});
    for (int d = 0; d < 3; ++d) xyz_[d].resize(n);
    nodes_.reserve(static_cast<size_t>(2 * (n / kLeafSize + 1) + 1));
    build(pts, 0, n, -1);
    for (int64_t i = 0; i < n; ++i)
      for (int d = 0; d < 3; ++d) xyz_[d][i] = pts[order_[i] * 3 + d];
    pos_.resize(n);
    for (int64_t i = 0; i < n; ++i) pos_[order_[i]] = i;
    mind_.assign(n, std::numeric_limits<T>::infinity());
    for (auto& nd : nodes_) nd.max = std::numeric_limits<T>::infinity();
    for (auto& nd : nodes_) nd.arg = nd.leaf() ? order_[nd.begin] : 0;
    // Internal argmax at +inf everywhere is the lowest original index below the node.
    for (int64_t i = static_cast<int64_t>(nodes_.size()) - 1; i >= 0; --i) refresh(i);
  }

  void sample(const T* pts, int64_t start, int64_t k, int64_t* out) {
    int64_t cur = start;
    for (int64_t s = 0; s < k; ++s) {
      out[s] = cur;
      select(cur);
      if (s + 1 == k) break;
      update(pts[cur * 3 + 0], pts[cur * 3 + 1], pts[cur * 3 + 2]);
      cur = nodes_[0].arg;
    }
  }

 private:
  struct Node {
    T lo[3], hi[3];
    T max;
    int64_t arg;
    int64_t begin, end;
    int32_t left = -1, right = -1, parent = -1;
    bool leaf() const { return left < 0; }
  };

  int32_t build(const T* pts, int64_t b, int64_t e, int32_t parent) {
    const int32_t id = static_cast<int32_t>(nodes_.size());
    nodes_.emplace_back();
    Node nd;
    nd.begin = b;
    nd.end = e;
    nd.parent = parent;
    for (int d = 0; d < 3; ++d) {
      nd.lo[d] = std::numeric_limits<T>::infinity();
      nd.hi[d] = -std::numeric_limits<T>::infinity();
    }
    for (int64_t i = b; i < e; ++i)
      for (int d = 0; d < 3; ++d) {
        const T v = pts[order_[i] * 3 + d];
        nd.lo[d] = std::min(nd.lo[d], v);
        nd.hi[d] = std::max(nd.hi[d], v);
      }
    nodes_[id] = nd;
    if (e - b > kLeafSize) {
      int axis = 0;
      for (int d = 1; d < 3; ++d)
        if (nd.hi[d] - nd.lo[d] > nd.hi[axis] - nd.lo[axis]) axis = d;
      const int64_t mid = b + (e - b) / 2;
      std::nth_element(order_.begin() + b, order_.begin() + mid, order_.begin() + e,
                       [&](int64_t x, int64_t y) { return pts[x * 3 + axis] < pts[y * 3 + axis]; });
      const int32_t l = build(pts, b, mid, id);
      const int32_t r = build(pts, mid, e, id);
      nodes_[id].left = l;
      nodes_[id].right = r;
    }
    return id;
  }

  void refresh(int64_t id) {
    Node& nd = nodes_[id];
    if (nd.leaf()) {
      T best = -std::numeric_limits<T>::infinity();
      int64_t arg = order_[nd.begin];
      for (int64_t i = nd.begin; i < nd.end; ++i)
        if (better(mind_[i], order_[i], best, arg)) {
          best = mind_[i];
          arg = order_[i];
        }
      nd.max = best;
      nd.arg = arg;
    } else {
      const Node& l = nodes_[nd.left];
      const Node& r = nodes_[nd.right];
      const bool take_r = better(r.max, r.arg, l.max, l.arg);
      nd.max = take_r ? r.max : l.max;
      nd.arg = take_r ? r.arg : l.arg;
    }
  }

  void select(int64_t orig) {
    const int64_t i = pos_[orig];
    mind_[i] = -std::numeric_limits<T>::infinity();
    int32_t id = leaf_of(i);
    for (; id >= 0; id = nodes_[id].parent) refresh(id);
  }

  int32_t leaf_of(int64_t i) const {
    int32_t id = 0;
    while (!nodes_[id].leaf()) id = i < nodes_[nodes_[id].left].end ? nodes_[id].left : nodes_[id].right;
    return id;
  }

  T box_dist(const Node& nd, T x, T y, T z) const {
    const T s[3] = {x, y, z};
    T acc = 0;
    for (int d = 0; d < 3; ++d) {
      T g = 0;
      if (s[d] < nd.lo[d]) g = nd.lo[d] - s[d];
      else if (s[d] > nd.hi[d]) g = s[d] - nd.hi[d];
      acc = d == 0 ? g * g : acc + g * g;
    }
    return acc;
  }

  // Returns whether the node's maximum may have changed.
  bool visit(int32_t id, T x, T y, T z) {
    Node& nd = nodes_[id];
    if (!(box_dist(nd, x, y, z) < nd.max)) return false;
    if (nd.leaf()) {
      const T* X = xyz_[0].data();
      const T* Y = xyz_[1].data();
      const T* Z = xyz_[2].data();
      T* md = mind_.data();
      for (int64_t i = nd.begin; i < nd.end; ++i) {
        T dx = X[i] - x, dy = Y[i] - y, dz = Z[i] - z;
        T d = dx * dx;
        d = d + dy * dy;
        d = d + dz * dz;
        md[i] = d < md[i] ? d : md[i];
      }
      refresh(id);
      return true;
    }
    const bool a = visit(nd.left, x, y, z);
    const bool b = visit(nd.right, x, y, z);
    if (a || b) refresh(id);
    return a || b;
  }

  void update(T x, T y, T z) { visit(0, x, y, z); }

  int64_t n_;
  std::vector<int64_t> order_, pos_;
  std::vector<T> xyz_[3];
  std::vector<T> mind_;
  std::vector<Node> nodes_;
};

template <typename T>
void fps_brute(const T* pts, int64_t n, int64_t D, int64_t start, int64_t k, int64_t* out) {
  std::vector<T> mind(n, std::numeric_limits<T>::infinity());
  int64_t cur = start;
  for (int64_t s = 0; s < k; ++s) {
    out[s] = cur;
    mind[cur] = -std::numeric_limits<T>::infinity();
    if (s + 1 == k) break;
    const T* c = pts + cur * D;
    T best = -std::numeric_limits<T>::infinity();
    int64_t arg = 0;
    for (int64_t i = 0; i < n; ++i) {
      const T* q = pts + i * D;
      T d = 0;
      for (int64_t j = 0; j < D; ++j) {
        const T t = q[j] - c[j];
        d = j == 0 ? t * t : d + t * t;
      }
      if (d < mind[i]) mind[i] = d;
      if (better(mind[i], i, best, arg)) {
        best = mind[i];
        arg = i;
      }
    }
    cur = arg;
  }
}

template <typename T>
void fps_cloud(const FpsParams& p, int64_t b) {
  int64_t* out = p.idx + b * p.K_max;
  std::fill(out, out + p.K_max, int64_t{-1});
  const int64_t n = clamp_len(p.lengths, b, p.P);
  const int64_t k = std::min(clamp_len(p.k, b, p.K_max), n);
  if (k == 0) return;
  const int64_t start = ((p.start ? p.start[b] : 0) % n + n) % n;
  const T* pts = static_cast<const T*>(p.points) + b * p.P * p.D;
  // The tree pays off once a cloud has more than a few leaves and we draw more than a handful.
  if (p.D == 3 && n > 4 * kLeafSize && k > 2) {
    KdFps<T>(pts, n).sample(pts, start, k, out);
  } else {
    fps_brute(pts, n, p.D, start, k, out);
  }
}

}  // namespace

void fps_cpu(const FpsParams& p) {
  dispatch_float(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    parallel_for(p.B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) fps_cloud<T>(p, b);
    });
    return 0;
  });
}

}  // namespace m3ad
