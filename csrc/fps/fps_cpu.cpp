// CPU FPS. For D == 3 a KD-tree prunes the distance updates while keeping the exact order
// (the QuickFPS / bucket-FPS idea): every node stores the largest current min-distance of the
// points below it; a new sample can lower a point's min-distance only if the squared distance
// from the sample to the node's bounding box is below that node maximum, so all other nodes are
// skipped. The box bound uses the same float operations as the point distances, and rounding is
// monotonic, so the bound never exceeds a true point distance: pruning never changes a result.
// Other D use the plain O(N*K) scan. Clouds run in parallel, or a single cloud on all threads.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <numeric>
#include <thread>
#include <type_traits>
#include <vector>

#include "common/kdtree.h"
#include "common/parallel.h"
#include "fps/fps.h"

namespace m3ad {
namespace {

// Leaves of 128: fewer tree levels to build (the build is about half of the cost) while each
// sample still updates only nearby leaves, whose vectorised refresh makes big leaves cheap;
// 64 measured 5-10 % slower, 256 about the same, 32 20-30 % slower.
constexpr int kLeafSize = 128;

// Larger value wins; equal values go to the lower original index.
template <typename T>
inline bool better(T v, int64_t i, T best_v, int64_t best_i) {
  return v > best_v || (v == best_v && i < best_i);
}

// Memory: 20 bytes per float point (coordinates 12, original index 4, min-distance 4), no more
// while the tree is built (common/kdtree.h); the tree's own coordinate array becomes ours, each
// leaf's points rearranged in place from xyz records into an x, a y and a z run.
template <typename T>
class KdFps {
 public:
  // Point i of the cloud at pts + i * stride * 3.
  KdFps(const T* pts, int64_t n, int64_t stride = 1) : tree_(pts, n, kLeafSize, stride) {
    const auto& nodes = tree_.nodes();
    orig_ = tree_.take_order();
    xyz_ = tree_.mutable_points();
    T runs[3 * kLeafSize];
    for (const auto& nd : nodes) {
      if (!nd.leaf()) continue;
      const int64_t m = nd.end - nd.begin;
      T* leaf = xyz_ + 3 * nd.begin;
      for (int64_t i = 0; i < m; ++i)
        for (int j = 0; j < 3; ++j) runs[j * m + i] = leaf[i * 3 + j];
      std::copy(runs, runs + 3 * m, leaf);
    }
    mind_.assign(n, std::numeric_limits<T>::infinity());
    max_.resize(nodes.size());
    arg_.resize(nodes.size());
    at_.resize(nodes.size());
    // Children follow their parent, so a reverse sweep refreshes bottom-up.
    for (int64_t i = static_cast<int64_t>(nodes.size()) - 1; i >= 0; --i) refresh(static_cast<int32_t>(i));
  }

  // pts: this tree's cloud (point i at pts + i * 3).
  void sample(const T* pts, int64_t start, int64_t k, int64_t* out) {
    int64_t cur = start, at = position(start);
    for (int64_t s = 0; s < k; ++s) {
      out[s] = cur;
      select(at);
      if (s + 1 == k) break;
      update(pts + cur * 3);
      cur = arg_[0];
      at = at_[0];
    }
  }

  // The tree position of original index `orig` (one scan: only the start point needs it).
  int64_t position(int64_t orig) const {
    return std::find(orig_.begin(), orig_.end(), static_cast<int32_t>(orig)) - orig_.begin();
  }

  // Marks the point at tree position i as sampled.
  void select(int64_t i) {
    mind_[i] = -std::numeric_limits<T>::infinity();
    const auto& nodes = tree_.nodes();
    int32_t id = 0;
    while (!nodes[id].leaf()) id = i < nodes[nodes[id].left].end ? nodes[id].left : nodes[id].right;
    for (; id >= 0; id = nodes[id].parent) refresh(id);
  }

  // Lowers the min-distances for a new sample at coordinates c.
  void update(const T* c) { visit(0, c); }

  // The farthest remaining point: its min-distance, lowest original index among ties, and tree position.
  T best_value() const { return max_[0]; }
  int64_t best_index() const { return arg_[0]; }
  int64_t best_position() const { return at_[0]; }

 private:
  using Tree = KdTree<T, 3>;

  // Node maximum (value, lowest original index, its position) from the children, or for a leaf
  // from its points; with `c`, a leaf first lowers its points' min-distances for the new sample
  // c. Leaves run two simple passes over the coordinate runs (min-update and max, then the
  // lowest index holding the max): branch-free loops the compiler vectorises, instead of one
  // pass of the index-aware comparison per point.
  void refresh(int32_t id, const T* c = nullptr) {
    const auto& nd = tree_.nodes()[id];
    if (nd.leaf()) {
      T* __restrict md = mind_.data() + nd.begin;
      const int64_t n = nd.end - nd.begin;
      if (c) {
        const T* __restrict x = xyz_ + 3 * nd.begin;
        const T* __restrict y = x + n;
        const T* __restrict z = y + n;
        const T cx = c[0], cy = c[1], cz = c[2];
        for (int64_t i = 0; i < n; ++i) {
          // sqdist's operations in its order: (x, y, z) differences of point minus sample
          const T dx = x[i] - cx, dy = y[i] - cy, dz = z[i] - cz;
          const T d = dx * dx + dy * dy + dz * dz;
          md[i] = d < md[i] ? d : md[i];
        }
      }
      // A max over lanes, folded at the end: the form the compiler vectorises without fast-math.
      constexpr int kLanes = 8;
      T lane[kLanes];
      for (int l = 0; l < kLanes; ++l) lane[l] = -std::numeric_limits<T>::infinity();
      int64_t i = 0;
      for (; i + kLanes <= n; i += kLanes)
        for (int l = 0; l < kLanes; ++l) lane[l] = md[i + l] > lane[l] ? md[i + l] : lane[l];
      T best = -std::numeric_limits<T>::infinity();
      for (; i < n; ++i) best = md[i] > best ? md[i] : best;
      for (int l = 0; l < kLanes; ++l) best = lane[l] > best ? lane[l] : best;
      const int32_t* orig = orig_.data() + nd.begin;
      int64_t arg = std::numeric_limits<int64_t>::max(), at = 0;  // at 0 when all are NaN
      for (int64_t j = 0; j < n; ++j)
        if (md[j] == best && orig[j] < arg) arg = orig[j], at = j;
      max_[id] = best;
      arg_[id] = orig[at];
      at_[id] = nd.begin + at;
    } else {
      const bool take_r = better(max_[nd.right], arg_[nd.right], max_[nd.left], arg_[nd.left]);
      const int32_t c2 = take_r ? nd.right : nd.left;
      max_[id] = max_[c2];
      arg_[id] = arg_[c2];
      at_[id] = at_[c2];
    }
  }

  // Lowers min-distances below node `id` for the new sample c; returns whether any may have changed.
  bool visit(int32_t id, const T* c) {
    const auto& nd = tree_.nodes()[id];
    if (!(tree_.box_dist(nd, c) < max_[id])) return false;
    if (nd.leaf()) {
      refresh(id, c);
      return true;
    }
    const bool a = visit(nd.left, c);
    const bool b = visit(nd.right, c);
    if (a || b) refresh(id);
    return a || b;
  }

  Tree tree_;
  std::vector<int32_t> orig_;  // original index of each tree position
  T* xyz_ = nullptr;            // the tree's coordinates, each leaf as x, y and z runs
  std::vector<T> mind_;
  std::vector<T> max_;           // per node: the largest min-distance below it,
  std::vector<int64_t> arg_, at_;  // the lowest original index holding it, and its position
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

// The farthest point of a team of threads' partial results, once per FPS step: each member
// publishes its best (value, index), waits for the others' and picks the same winner (larger
// value, then lower index). Two cache-line transfers per member and step, far below a fork/join
// per step (which was tried: under OMP_WAIT_POLICY=PASSIVE it made 1M points 1.8x slower).
template <typename T>
class TeamArgmax {
 public:
  explicit TeamArgmax(int team) : slots_(static_cast<size_t>(team)) {}

  // Publishes member t's best for step s, waits for all others', returns the winner (or -1 when
  // a member failed).
  int64_t exchange(int t, int64_t s, T value, int64_t arg) {
    Slot& mine = slots_[t];
    const int b = static_cast<int>(s & 1);
    mine.value[b] = value;
    mine.arg[b] = arg;
    mine.seq.store(s, std::memory_order_release);
    T best_v = value;
    int64_t best_i = arg;
    for (size_t o = 0; o < slots_.size(); ++o) {
      if (static_cast<int>(o) == t) continue;
      Slot& other = slots_[o];
      for (int spins = 0; other.seq.load(std::memory_order_acquire) < s; ++spins) {
        if (failed_.load(std::memory_order_acquire)) return -1;
        if (spins > 1024) std::this_thread::yield();  // oversubscribed cores: let the others run
      }
      if (better(other.value[b], other.arg[b], best_v, best_i)) {
        best_v = other.value[b];
        best_i = other.arg[b];
      }
    }
    return best_i;
  }

  // A member that throws says so first, so that the others stop waiting for it.
  void fail() { failed_.store(true, std::memory_order_release); }

 private:
  struct alignas(64) Slot {
    std::atomic<int64_t> seq{-1};
    T value[2];      // double-buffered by step parity: a member can be one step ahead of a reader
    int64_t arg[2];
  };

  std::vector<Slot> slots_;
  std::atomic<bool> failed_{false};
};

// FPS in any dimension (feature space: the greedy coreset of PatchCore-style memory banks) as an
// exhaustive scan, but over blocks of kLanes points stored dimension-major, so that the distances
// of a block's points, each summed over its dimensions in order exactly as fps_brute sums them,
// advance together in SIMD lanes. A large cloud's blocks are split over a team of threads, whose
// chunks' farthest points TeamArgmax compares after each sample (ties still go to the lower index).
template <typename T>
class BlockedFps {
 public:
  static constexpr int kLanes = 8;
  // Work per iteration (point coordinates) from which the blocks are split over a team of threads.
  static constexpr int64_t kSplitWork = int64_t{1} << 18;

  BlockedFps(const T* pts, int64_t n, int64_t D) : pts_(pts), D_(D), nb_((n + kLanes - 1) / kLanes) {
    xb_.assign(static_cast<size_t>(nb_ * D * kLanes), T(0));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < D; ++j) xb_[(i / kLanes * D + j) * kLanes + i % kLanes] = pts[i * D + j];
    mind_.assign(static_cast<size_t>(nb_ * kLanes), std::numeric_limits<T>::infinity());
    for (int64_t i = n; i < nb_ * kLanes; ++i) mind_[i] = -std::numeric_limits<T>::infinity();  // padding
  }

  // A team of threads splits the blocks into contiguous chunks once an iteration is worth it;
  // after each sample the members swap their chunk's farthest point (TeamArgmax), and the owner
  // of the winner's chunk marks it.
  void sample(int64_t start, int64_t k, int64_t* out, int team) {
    const int members = team > 1 && nb_ * kLanes * D_ >= kSplitWork ? static_cast<int>(std::min<int64_t>(team, nb_)) : 1;
    if (members == 1) {
      run(0, 1, start, k, out, nullptr);
      return;
    }
    TeamArgmax<T> ex(members);
    parallel_team(members, [&](int t, int granted) {
      if (granted != members) {  // a smaller team than asked for (nested call): one member does all
        if (t == 0) run(0, 1, start, k, out, nullptr);
        return;
      }
      run(t, members, start, k, out, &ex);
    });
  }

 private:
  // Member t of `members`: blocks [nb * t / members, nb * (t + 1) / members); fills out when t == 0.
  void run(int t, int members, int64_t start, int64_t k, int64_t* out, TeamArgmax<T>* ex) {
    const int64_t b0 = nb_ * t / members, b1 = nb_ * (t + 1) / members;
    try {
      int64_t cur = start;
      for (int64_t s = 0; s < k; ++s) {
        if (t == 0) out[s] = cur;
        if (cur >= b0 * kLanes && cur < b1 * kLanes) mind_[cur] = -std::numeric_limits<T>::infinity();
        if (s + 1 == k) break;
        T best;
        int64_t arg;
        update(pts_ + cur * D_, b0, b1, best, arg);
        cur = ex ? ex->exchange(t, s, best, arg) : arg;
        if (cur < 0) return;  // another member failed
      }
    } catch (...) {
      if (ex) ex->fail();
      throw;
    }
  }

  // Lowers the min-distances of blocks [b0, b1) for a sample at c; returns their largest and the
  // lowest index holding it. Each lane keeps its largest and the first block holding it (a
  // compare and two selects, vectorised with the rest), so no second pass over the
  // min-distances is needed: the lowest index of the overall largest is the smallest
  // block * kLanes + lane among the lanes that hold it.
  void update(const T* c, int64_t b0, int64_t b1, T& best, int64_t& arg) {
    using Block = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;  // lane-width block numbers
    T lv[kLanes];
    Block lb[kLanes];
    for (int l = 0; l < kLanes; ++l) lv[l] = -std::numeric_limits<T>::infinity(), lb[l] = static_cast<Block>(b0);
    for (int64_t b = b0; b < b1; ++b) {
      const T* x = xb_.data() + b * D_ * kLanes;
      T acc[kLanes];
      for (int l = 0; l < kLanes; ++l) {
        const T t = x[l] - c[0];
        acc[l] = t * t;
      }
      for (int64_t j = 1; j < D_; ++j) {
        const T cj = c[j];
        for (int l = 0; l < kLanes; ++l) {
          const T t = x[j * kLanes + l] - cj;
          acc[l] = acc[l] + t * t;
        }
      }
      T* md = mind_.data() + b * kLanes;
      const Block bb = static_cast<Block>(b);
      for (int l = 0; l < kLanes; ++l) {
        const T m = acc[l] < md[l] ? acc[l] : md[l];
        md[l] = m;
        const bool up = m > lv[l];
        lb[l] = up ? bb : lb[l];
        lv[l] = up ? m : lv[l];
      }
    }
    T bv = lv[0];
    for (int l = 1; l < kLanes; ++l) bv = lv[l] > bv ? lv[l] : bv;
    arg = std::numeric_limits<int64_t>::max();
    for (int l = 0; l < kLanes; ++l)
      if (lv[l] == bv) arg = std::min<int64_t>(arg, static_cast<int64_t>(lb[l]) * kLanes + l);
    best = bv;
  }

  const T* pts_;
  int64_t D_, nb_;
  std::vector<T> xb_;    // [block][dimension][lane]
  std::vector<T> mind_;  // padded lanes hold -inf: never the farthest
};

// One cloud on a team of threads. Thread t owns the points t, t + team, t + 2 team, ...: every
// subset spans the whole cloud, so each new sample costs every thread about the same work, and
// each thread builds and updates a tree of its own subset. After each sample the threads swap
// their subset's farthest point (TeamArgmax) and all pick the same winner, which is the global
// farthest point: the order is exact.
template <typename T>
class SplitFps {
 public:
  explicit SplitFps(int team) : team_(team), ex_(team) {}

  // Thread t of the team: fills out[0, k) when t == 0.
  void run(int t, const T* pts, int64_t n, int64_t start, int64_t k, int64_t* out) {
    const int team = team_;
    try {
      const int64_t m = (n - t + team - 1) / team;
      KdFps<T> tree(pts + t * 3, m, team);
      int64_t cur = start;
      for (int64_t s = 0; s < k; ++s) {
        if (t == 0) out[s] = cur;
        // The owner of a sample after the start proposed it: it is still this tree's best.
        if (cur % team == t) tree.select(s == 0 ? tree.position(cur / team) : tree.best_position());
        if (s + 1 == k) break;
        tree.update(pts + cur * 3);
        cur = ex_.exchange(t, s, tree.best_value(), tree.best_index() * team + t);
        if (cur < 0) return;  // another member failed
      }
    } catch (...) {
      ex_.fail();
      throw;
    }
  }

 private:
  int team_;
  TeamArgmax<T> ex_;
};

// Threads per cloud: splitting needs every member's subset to be worth a tree of its own.
constexpr int64_t kMinSplitPoints = 4096;

template <typename T>
void fps_cloud(const FpsParams& p, int64_t b, int team = 1) {
  int64_t* out = p.idx + b * p.K_max;
  std::fill(out, out + p.K_max, int64_t{-1});
  const int64_t n = clamp_len(p.lengths, b, p.P);
  const int64_t k = std::min(clamp_len(p.k, b, p.K_max), n);
  if (k == 0) return;
  const int64_t start = ((p.start ? p.start[b] : 0) % n + n) % n;
  const T* pts = static_cast<const T*>(p.points) + b * p.P * p.D;
  // The tree pays off once a cloud has more than a few leaves and we draw more than a handful.
  if (p.D == 3 && n > 4 * kLeafSize && k > 2) {
    team = static_cast<int>(std::min<int64_t>(team, n / kMinSplitPoints));
    if (team > 1) {
      SplitFps<T> split(team);
      parallel_team(team, [&](int t, int granted) {
        // A smaller team than asked for (nested call) runs the whole cloud on one tree.
        if (granted != team) {
          if (t == 0) KdFps<T>(pts, n).sample(pts, start, k, out);
          return;
        }
        split.run(t, pts, n, start, k, out);
      });
    } else {
      KdFps<T>(pts, n).sample(pts, start, k, out);
    }
  } else {
    // Other dimensions: the blocked scan (2-core EPYC, 20k points, K = 1000, against the plain
    // scan: D = 4 30 vs 29 ms, D = 8 48 vs 46, D = 16 43 vs 88, D = 128 304 vs 866; 100k points,
    // D = 8: 123 vs 225). Small 3-D clouds keep the plain scan.
    if (p.D != 3)
      BlockedFps<T>(pts, n, p.D).sample(start, k, out, team);
    else fps_brute(pts, n, p.D, start, k, out);
  }
}

}  // namespace

void fps_cpu(const FpsParams& p) {
  dispatch_float(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    // Clouds in parallel; when there are fewer clouds than threads, each cloud in turn on all
    // threads.
    const int threads = get_num_threads();
    if (p.B < threads) {
      for (int64_t b = 0; b < p.B; ++b) fps_cloud<T>(p, b, threads);
    } else {
      parallel_for(p.B, 1, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) fps_cloud<T>(p, b);
      });
    }
    return 0;
  });
}

}  // namespace m3ad
