// kNN over spatially sorted 3-D points, pruned by tile bounding boxes (the CUDA path for large
// clouds; the CPU twin serves tests and CPU callers of the same plan).
//
// The adapter sorts the points p2 of each cloud along a Morton curve and passes, for every run of
// kKnnTile consecutive sorted points, their bounding box; it sorts the queries the same way and
// gives each its position among the sorted points (`home`). A query visits the tiles outward from
// its home tile (home, home + 1, home - 1, ...) and skips every tile whose box lies farther than
// its current K-th neighbour, so after the first few tiles almost every box test fails and a
// query scans a few dozen points instead of the whole cloud. Boxes of kKnnSuper consecutive
// tiles let a walk skip a whole run of tiles with one test (1M points: 977 tests, not 31k).
//
// Exactness: box_bound() rounds the same operations in the same order as point_dist() (an axis gap is
// |p - q| at the box face, and rounding is monotone), so it never exceeds the computed distance of
// a point inside the box; a tile is skipped only when its bound is strictly larger than the K-th
// distance, which keeps points that tie with it. Tiles are visited out of index order, so the
// lists order candidates by (distance, original index) explicitly: the result is the one of the
// index-order scans (knn_cpu.cpp, knn_cuda.cu), bit for bit.
#pragma once
#include <cmath>
#include <cstdint>

#include "common/distance.h"
#include "common/host_device.h"
#include "common/launch.h"
#include "knn/knn.h"

namespace m3ad {

constexpr int64_t kKnnTile = 32;
constexpr int64_t kKnnSuper = 32;  // tiles per super-tile

struct KnnTilesParams : KnnParams {  // p1, p2: the sorted queries and points, D = 3
  // (B, P1): the output row of each sorted query; nullptr: its sorted position (a cloud searched
  // against itself, rows left in the sorted order: tiles_out_row).
  const int64_t* order1 = nullptr;
  const int64_t* order2 = nullptr;  // (B, P2): the original index of each sorted point
  const void* boxes = nullptr;      // (B, tiles, 6): lo x, y, z, hi x, y, z of each tile
  // (B, P1): sorted position of each sorted query's code among the points; nullptr: the query's
  // own position (p1 is p2: tiles_home).
  const int64_t* home = nullptr;
  int64_t tiles = 0;                // tiles per cloud: ceil(P2 / kKnnTile)
  const void* supers = nullptr;     // (B, super_tiles, 6): the box of each kKnnSuper tiles
  int64_t super_tiles = 0;          // ceil(tiles / kKnnSuper)
  // On CUDA: 0 picks (registers up to K = 32, a warp per query up to K = 256); 1: a thread per
  // query keeps its list in its output row; 2: a warp per query (K <= 256), at any K, so that a
  // GPU run can time the three on normals' K = 30 too (scripts/profile_descriptors.py). For
  // measurements and tests (the CPU twin has one way).
  int list_mode = 0;
  // A bounded search: only neighbours at distance < max_dist (compared as T), i.e. the prefix of
  // the K-nearest list below it, -1 padded. open3d's hybrid neighbourhoods (normals and FPFH
  // with a radius) keep only that prefix; bounding the search spares the walk every tile beyond
  // the radius and the lists every insertion there. +inf: the plain kNN.
  double max_dist = INFINITY;
  // (B, P1) by sorted row: search only the rows where it is nonzero and leave the others' output
  // untouched (the float32 filter's undecided rows, knn_rerank.h); nullptr: every row.
  const uint8_t* todo = nullptr;
  M3AD_HD bool bounded() const { return max_dist < INFINITY; }
  M3AD_HD bool wanted(int64_t b, int64_t qs) const { return !todo || todo[b * P1 + qs]; }
};

// Where sorted query qs of cloud b writes its row, and where its walk starts (see order1, home).
M3AD_HD int64_t tiles_out_row(const KnnTilesParams& p, int64_t b, int64_t qs) {
  return b * p.P1 + (p.order1 ? p.order1[b * p.P1 + qs] : qs);
}
M3AD_HD int64_t tiles_home(const KnnTilesParams& p, int64_t b, int64_t qs) {
  return p.home ? p.home[b * p.P1 + qs] : qs;
}

void knn_tiles_cpu(const KnnTilesParams& p);
void knn_tiles_cuda(const KnnTilesParams& p, const Device& dev);

// (d, i) comes strictly before (d2, i2) in the result order.
template <typename T>
M3AD_HD bool nn_before(T d, int64_t i, T d2, int64_t i2) {
  return d < d2 || (d == d2 && i < i2);
}

// A lower bound of point_dist<T, 3>(a, q) for every a in the box, computed with the same rounded steps.
template <typename T>
M3AD_HD T box_bound(const T* box, const T* q, int norm) {
  T g[3];
  for (int j = 0; j < 3; ++j) {
    const T lo = box[j], hi = box[3 + j];
    g[j] = q[j] < lo ? lo - q[j] : (q[j] > hi ? hi - q[j] : T(0));
  }
  T d = norm_term(g[0], norm);
  d = d + norm_term(g[1], norm);
  return d + norm_term(g[2], norm);
}

// A sorted top-K list in memory (the output row itself), any K, of distances < bound.
template <typename T>
struct NnMemList {
  T* d;
  int64_t* i;
  int64_t K;
  T bound;
  int64_t count = 0;
  M3AD_HD NnMemList(T* dists, int64_t* idx, int64_t k, T max_dist = T(INFINITY))
      : d(dists), i(idx), K(k), bound(max_dist) {}
  M3AD_HD T worst() const { return count < K ? bound : d[K - 1]; }
  M3AD_HD void insert(T dist, int64_t idx) {
    if (count < K ? !(dist < bound) : !nn_before(dist, idx, d[K - 1], i[K - 1])) return;
    int64_t s = count < K ? count++ : K - 1;
    for (; s > 0 && nn_before(dist, idx, d[s - 1], i[s - 1]); --s) {
      d[s] = d[s - 1];
      i[s] = i[s - 1];
    }
    d[s] = dist;
    i[s] = idx;
  }
  // Unfilled slots get the contract's padding: index -1, distance 0.
  M3AD_HD void finish() {
    for (int64_t s = count; s < K; ++s) {
      d[s] = T(0);
      i[s] = -1;
    }
  }
};

// The order in which a search visits the tiles of a cloud of n2 sorted points: two walks from the
// home tile taking turns, `up` to the last tile and `down` to the first. A walk entering a
// super-tile may test its box first and, if it is out of reach, jump past it (the K-th distance
// only shrinks, so what is out of reach now stays so). Usage:
//   for (TileWalk w(home, n2); !w.done();) {
//     if (w.next() && <super-tile w.t / kKnnSuper out of reach>) { w.skip_super(); continue; }
//     w.take();
//     ... tile w.t: points [w.t * kKnnTile, min((w.t + 1) * kKnnTile, n2)) ...
//   }
struct TileWalk {
  int64_t nt, h, up, down, t = 0;
  bool up_turn = true, go_up = true;
  M3AD_HD TileWalk(int64_t home, int64_t n2) : nt((n2 + kKnnTile - 1) / kKnnTile) {
    h = home / kKnnTile;
    h = h >= nt ? nt - 1 : (h < 0 ? 0 : h);
    up = h;
    down = h - 1;
  }
  M3AD_HD bool done() const { return up >= nt && down < 0; }
  // Picks the next tile `t`; true when the walk enters its super-tile with it.
  M3AD_HD bool next() {
    go_up = down < 0 || (up < nt && up_turn);
    up_turn = !up_turn;
    t = go_up ? up : down;
    return go_up ? (t % kKnnSuper == 0 || t == h) : (t % kKnnSuper == kKnnSuper - 1 || t == h - 1);
  }
  M3AD_HD void skip_super() {
    const int64_t s = t / kKnnSuper;
    if (go_up) up = (s + 1) * kKnnSuper;
    else down = s * kKnnSuper - 1;
  }
  M3AD_HD void take() {
    if (go_up) ++up;
    else --down;
  }
};

// One cloud's share of the plan: its sorted points, their original indices, the boxes.
template <typename T>
struct TilesCloud {
  const T* pts;
  const int64_t* order2;
  const T* boxes;
  const T* supers;
  int64_t n2;
  M3AD_HD TilesCloud(const KnnTilesParams& p, int64_t b)
      : pts(static_cast<const T*>(p.p2) + b * p.P2 * 3),
        order2(p.order2 + b * p.P2),
        boxes(static_cast<const T*>(p.boxes) + b * p.tiles * 6),
        supers(static_cast<const T*>(p.supers) + b * p.super_tiles * 6),
        n2(clamp_len(p.lengths2, b, p.P2)) {}
  M3AD_HD T super_bound(int64_t t, const T* q, int norm) const { return box_bound<T>(supers + t / kKnnSuper * 6, q, norm); }
  M3AD_HD T tile_bound(int64_t t, const T* q, int norm) const { return box_bound<T>(boxes + t * 6, q, norm); }
  // Offers the list every point of tile t that it can take.
  template <typename List>
  M3AD_HD void offer_tile(int64_t t, const T* q, int norm, List& list) const {
    const int64_t j1 = (t + 1) * kKnnTile < n2 ? (t + 1) * kKnnTile : n2;
    for (int64_t j = t * kKnnTile; j < j1; ++j) {
      const T d = point_dist<T, 3>(pts + j * 3, q, 3, norm);
      if (d > list.worst()) continue;
      list.insert(d, order2[j]);
    }
  }
};

// Offers query `qs` (a sorted row of cloud b) every point of the tiles its list cannot rule out.
template <typename T, typename List>
M3AD_HD void tiles_search(const KnnTilesParams& p, int64_t b, int64_t qs, List& list) {
  const TilesCloud<T> c(p, b);
  if (c.n2 == 0) return;
  const T* qp = static_cast<const T*>(p.p1) + (b * p.P1 + qs) * 3;
  const T q[3] = {qp[0], qp[1], qp[2]};
  for (TileWalk w(tiles_home(p, b, qs), c.n2); !w.done();) {
    if (w.next() && c.super_bound(w.t, q, p.norm) > list.worst()) {
      w.skip_super();
      continue;
    }
    w.take();
    if (!(c.tile_bound(w.t, q, p.norm) > list.worst())) c.offer_tile(w.t, q, p.norm, list);
  }
}

}  // namespace m3ad
