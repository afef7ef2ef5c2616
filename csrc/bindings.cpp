// The only translation unit that knows Python. Every op entry takes raw addresses (Python ints
// from tensor.data_ptr()), sizes, a dtype tag and a device/stream, fills a plain parameter struct
// and calls the CPU or CUDA kernel with the GIL released. Validation is the adapter's job
// (mentor3ad_ext/ops); kernels only clamp what could otherwise read out of bounds.
#include <omp.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include <cstdint>
#include <string>

#include "common/finite.h"
#include "common/fp_mode.h"
#include "common/parallel.h"
#include "ball_query/ball_query.h"
#include "coalesce/coalesce.h"
#include "common/cpu_simd.h"
#include "fpfh/fpfh.h"
#include "fps/fps.h"
#include "knn/knn.h"
#include "knn/knn_rerank.h"
#include "knn/knn_select.h"
#include "knn/knn_tiles.h"
#include "knn/morton_order.h"
#include "knn/row_smallest.h"
#include "knn/tiles_plan.h"
#include "metrics/metrics.h"
#include "normals/normals.h"
#include "projection/projection.h"
#include "scatter/scatter.h"

#ifdef M3AD_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace py = pybind11;
using m3ad::Device;
using m3ad::DType;

namespace {

template <typename T>
T* as_ptr(uintptr_t a) { return reinterpret_cast<T*>(a); }

Device make_device(int index, uintptr_t stream) {
  Device d;
  d.index = index;
  d.stream = reinterpret_cast<void*>(stream);
  return d;
}

py::dict build_info() {
  py::dict info;
  info["version"] = M3AD_VERSION;
  info["compiler"] = M3AD_COMPILER;
  info["threads"] = m3ad::get_num_threads();
  info["cpu_simd"] = m3ad::cpu_simd_name(m3ad::cpu_simd());
  info["threading"] = "OpenMP " + std::to_string(_OPENMP);
#ifdef M3AD_WITH_CUDA
  info["cuda"] = true;
  info["cuda_version"] = std::to_string(CUDART_VERSION / 1000) + "." + std::to_string((CUDART_VERSION % 1000) / 10);
  info["cuda_archs"] = M3AD_CUDA_ARCHS;
  int count = 0;
  info["cuda_devices"] = cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
  cudaGetLastError();  // a missing driver is not an error here
#else
  info["cuda"] = false;
  info["cuda_version"] = py::none();
  info["cuda_archs"] = "";
  info["cuda_devices"] = 0;
#endif
  return info;
}

template <typename Params, typename CpuFn, typename CudaFn>
void dispatch(const char* name, const Params& p, const Device& dev, CpuFn cpu, CudaFn cuda) {
  if (!dev.is_cuda()) return cpu(p);
#ifdef M3AD_WITH_CUDA
  cuda(p, dev);
#else
  (void)cuda;
  m3ad::no_cuda_build(name);
#endif
}

#ifdef M3AD_WITH_CUDA
#define M3AD_CUDA_FN(fn) [](const auto& p, const Device& d) { fn(p, d); }
#else
#define M3AD_CUDA_FN(fn) [](const auto&, const Device&) {}
#endif

void fps(uintptr_t points, uintptr_t lengths, uintptr_t k, uintptr_t start, uintptr_t idx,
         uintptr_t workspace, int64_t B, int64_t P, int64_t D, int64_t K_max, int dtype, int device,
         uintptr_t stream) {
  m3ad::FpsParams p;
  p.points = as_ptr<const void>(points);
  p.lengths = as_ptr<const int64_t>(lengths);
  p.k = as_ptr<const int64_t>(k);
  p.start = as_ptr<const int64_t>(start);
  p.idx = as_ptr<int64_t>(idx);
  p.workspace = as_ptr<void>(workspace);
  p.B = B, p.P = P, p.D = D, p.K_max = K_max;
  p.dtype = m3ad::to_dtype(dtype);
  dispatch("sample_farthest_points", p, make_device(device, stream), m3ad::fps_cpu, M3AD_CUDA_FN(m3ad::fps_cuda));
}

size_t fps_workspace_bytes(int64_t B, int64_t P, int dtype) {
#ifdef M3AD_WITH_CUDA
  return m3ad::fps_cuda_workspace_bytes(B, P, m3ad::to_dtype(dtype));
#else
  (void)B, (void)P, (void)dtype;
  return 0;
#endif
}


// ---- scatter (deterministic segment reductions) ----
void rows_plan(uintptr_t index, uintptr_t offsets, uintptr_t order, uintptr_t workspace, int64_t B, int64_t M,
               int64_t R, int device, uintptr_t stream) {
  m3ad::RowsPlanParams p;
  p.index = as_ptr<const int64_t>(index);
  p.offsets = as_ptr<int64_t>(offsets);
  p.order = as_ptr<int64_t>(order);
  p.workspace = as_ptr<void>(workspace);
  p.B = B, p.M = M, p.R = R;
  dispatch("rows_plan", p, make_device(device, stream), m3ad::rows_plan_cpu, M3AD_CUDA_FN(m3ad::rows_plan_cuda));
}

size_t rows_plan_workspace_bytes(int64_t B, int64_t M, int64_t R) {
#ifdef M3AD_WITH_CUDA
  return m3ad::rows_plan_cuda_workspace_bytes(B, M, R);
#else
  (void)B, (void)M, (void)R;
  return 0;
#endif
}

void segment_reduce(uintptr_t offsets, uintptr_t order, int64_t group, uintptr_t src_index, int64_t src_group,
                    uintptr_t weights, uintptr_t values, int64_t vs_b, int64_t vs_s, int64_t vs_c, uintptr_t out,
                    int64_t os_b, int64_t os_r, int64_t os_c, uintptr_t argmax, int64_t as_b, int64_t as_r,
                    int64_t as_c, int64_t B, int64_t M, int64_t S, int64_t R, int64_t C, int reduce, int dtype,
                    int device, uintptr_t stream) {
  m3ad::SegmentReduceParams p;
  p.offsets = as_ptr<const int64_t>(offsets);
  p.order = as_ptr<const int64_t>(order);
  p.group = group;
  p.src_index = as_ptr<const int64_t>(src_index);
  p.src_group = src_group;
  p.weights = as_ptr<const void>(weights);
  p.values = as_ptr<const void>(values);
  p.vs_b = vs_b, p.vs_s = vs_s, p.vs_c = vs_c;
  p.out = as_ptr<void>(out);
  p.os_b = os_b, p.os_r = os_r, p.os_c = os_c;
  p.argmax = as_ptr<int64_t>(argmax);
  p.as_b = as_b, p.as_r = as_r, p.as_c = as_c;
  p.B = B, p.M = M, p.S = S, p.R = R, p.C = C;
  p.reduce = m3ad::to_reduce(reduce);
  p.dtype = m3ad::to_dtype(dtype);
  dispatch("segment_reduce", p, make_device(device, stream), m3ad::segment_reduce_cpu,
           M3AD_CUDA_FN(m3ad::segment_reduce_cuda));
}

void rows_dot(uintptr_t a, int64_t a_sb, int64_t a_sr, int64_t a_sc, int64_t a_rows, uintptr_t a_index,
              int64_t a_group, uintptr_t v, int64_t v_sb, int64_t v_sr, int64_t v_sc, int64_t v_rows,
              uintptr_t v_index, int64_t v_group, uintptr_t out, int64_t B, int64_t M, int64_t C, int dtype,
              int device, uintptr_t stream) {
  m3ad::RowsDotParams p;
  p.a = as_ptr<const void>(a);
  p.a_sb = a_sb, p.a_sr = a_sr, p.a_sc = a_sc, p.a_rows = a_rows;
  p.a_index = as_ptr<const int64_t>(a_index);
  p.a_group = a_group;
  p.v = as_ptr<const void>(v);
  p.v_sb = v_sb, p.v_sr = v_sr, p.v_sc = v_sc, p.v_rows = v_rows;
  p.v_index = as_ptr<const int64_t>(v_index);
  p.v_group = v_group;
  p.out = as_ptr<void>(out);
  p.B = B, p.M = M, p.C = C;
  p.dtype = m3ad::to_dtype(dtype);
  dispatch("rows_dot", p, make_device(device, stream), m3ad::rows_dot_cpu, M3AD_CUDA_FN(m3ad::rows_dot_cuda));
}

void scatter_max_backward(uintptr_t index, uintptr_t argmax, int64_t am_sb, int64_t am_sr, int64_t am_sc,
                          uintptr_t grad, int64_t g_sb, int64_t g_sr, int64_t g_sc, uintptr_t out, int64_t group,
                          int64_t B, int64_t M, int64_t S, int64_t R, int64_t C, int dtype, int device,
                          uintptr_t stream) {
  m3ad::MaxBackwardParams p;
  p.index = as_ptr<const int64_t>(index);
  p.argmax = as_ptr<const int64_t>(argmax);
  p.am_sb = am_sb, p.am_sr = am_sr, p.am_sc = am_sc;
  p.grad = as_ptr<const void>(grad);
  p.g_sb = g_sb, p.g_sr = g_sr, p.g_sc = g_sc;
  p.out = as_ptr<void>(out);
  p.group = group;
  p.B = B, p.M = M, p.S = S, p.R = R, p.C = C;
  p.dtype = m3ad::to_dtype(dtype);
  dispatch("scatter_max_backward", p, make_device(device, stream), m3ad::scatter_max_backward_cpu,
           M3AD_CUDA_FN(m3ad::scatter_max_backward_cuda));
}

// ---- projection (pixel sampling geometry) ----
m3ad::PixelCornersParams corners_params(uintptr_t uv, int64_t B, int64_t N, int64_t H, int64_t W, bool bilinear,
                                        bool align_corners, int dtype) {
  m3ad::PixelCornersParams p;
  p.uv = as_ptr<const void>(uv);
  p.B = B, p.N = N, p.H = H, p.W = W;
  p.bilinear = bilinear, p.align_corners = align_corners;
  p.dtype = m3ad::to_dtype(dtype);
  return p;
}

void pixel_corners(uintptr_t uv, uintptr_t index, uintptr_t weights, int64_t B, int64_t N, int64_t H, int64_t W,
                   bool bilinear, bool align_corners, int dtype, int device, uintptr_t stream) {
  m3ad::PixelCornersParams p = corners_params(uv, B, N, H, W, bilinear, align_corners, dtype);
  p.index = as_ptr<int64_t>(index);
  p.weights = as_ptr<void>(weights);
  dispatch("pixel_corners", p, make_device(device, stream), m3ad::pixel_corners_cpu,
           M3AD_CUDA_FN(m3ad::pixel_corners_cuda));
}

void pixel_corners_backward(uintptr_t uv, uintptr_t grad_weights, uintptr_t grad_uv, int64_t B, int64_t N, int64_t H,
                            int64_t W, bool bilinear, bool align_corners, int dtype, int device, uintptr_t stream) {
  m3ad::PixelCornersParams p = corners_params(uv, B, N, H, W, bilinear, align_corners, dtype);
  p.grad_weights = as_ptr<const void>(grad_weights);
  p.grad_uv = as_ptr<void>(grad_uv);
  dispatch("pixel_corners_backward", p, make_device(device, stream), m3ad::pixel_corners_backward_cpu,
           M3AD_CUDA_FN(m3ad::pixel_corners_backward_cuda));
}
template <typename Params>
Params pair_query(uintptr_t p1, uintptr_t p2, uintptr_t lengths1, uintptr_t lengths2, uintptr_t dists, uintptr_t idx,
                  int64_t B, int64_t P1, int64_t P2, int64_t D, int64_t K, int dtype) {
  Params p;
  p.p1 = as_ptr<const void>(p1);
  p.p2 = as_ptr<const void>(p2);
  p.lengths1 = as_ptr<const int64_t>(lengths1);
  p.lengths2 = as_ptr<const int64_t>(lengths2);
  p.dists = as_ptr<void>(dists);
  p.idx = as_ptr<int64_t>(idx);
  p.B = B, p.P1 = P1, p.P2 = P2, p.D = D, p.K = K;
  p.dtype = m3ad::to_dtype(dtype);
  return p;
}

void knn(uintptr_t p1, uintptr_t p2, uintptr_t lengths1, uintptr_t lengths2, uintptr_t dists,
         uintptr_t idx, int64_t B, int64_t P1, int64_t P2, int64_t D, int64_t K, int norm, int select_mode,
         int dtype, int device, uintptr_t stream) {
  auto p = pair_query<m3ad::KnnParams>(p1, p2, lengths1, lengths2, dists, idx, B, P1, P2, D, K, dtype);
  p.norm = norm;
  p.select_mode = select_mode;
  dispatch("knn_points", p, make_device(device, stream), m3ad::knn_cpu, M3AD_CUDA_FN(m3ad::knn_cuda));
}

// index_bits 32: idx is int32 (KnnParams::idx32).
// row_start/row_count (both or neither; int32 indices only): packed rows (KnnParams's).
void knn_within(uintptr_t p1, uintptr_t p2, uintptr_t lengths1, uintptr_t lengths2, uintptr_t dists,
                uintptr_t idx, int64_t B, int64_t P1, int64_t P2, int64_t K, double max_dist, int dtype,
                int index_bits, uintptr_t row_start, uintptr_t row_count) {
  auto p = pair_query<m3ad::KnnParams>(p1, p2, lengths1, lengths2, dists, idx, B, P1, P2, 3, K, dtype);
  if (index_bits == 32) p.idx32 = as_ptr<int32_t>(idx), p.idx = nullptr;
  else if (index_bits != 64) throw std::invalid_argument("knn_within: index_bits must be 32 or 64");
  p.row_start = as_ptr<int64_t>(row_start);
  p.row_count = as_ptr<int32_t>(row_count);
  if (!p.row_start != !p.row_count || (p.row_start && (!p.idx32 || p.dists)))
    throw std::invalid_argument("knn_within: packed rows take both row_start and row_count, int32 indices, no dists");
  m3ad::knn_within_cpu(p, max_dist);
}

void knn_tiles(uintptr_t p1, uintptr_t p2, uintptr_t lengths1, uintptr_t lengths2, uintptr_t dists,
               uintptr_t idx, uintptr_t order1, uintptr_t order2, uintptr_t boxes, uintptr_t supers,
               uintptr_t home, int64_t B, int64_t P1, int64_t P2, int64_t K, int64_t tiles, int64_t super_tiles,
               int norm, int list_mode, double max_dist, int dtype, int device, uintptr_t stream, uintptr_t todo) {
  auto p = pair_query<m3ad::KnnTilesParams>(p1, p2, lengths1, lengths2, dists, idx, B, P1, P2, 3, K, dtype);
  p.norm = norm;
  p.order1 = as_ptr<const int64_t>(order1);
  p.order2 = as_ptr<const int64_t>(order2);
  p.boxes = as_ptr<const void>(boxes);
  p.home = as_ptr<const int64_t>(home);
  p.tiles = tiles;
  p.supers = as_ptr<const void>(supers);
  p.super_tiles = super_tiles;
  p.list_mode = list_mode;
  p.max_dist = max_dist;
  p.todo = as_ptr<const uint8_t>(todo);
  dispatch("knn_points", p, make_device(device, stream), m3ad::knn_tiles_cpu,
           M3AD_CUDA_FN(m3ad::knn_tiles_cuda));
}

// The float32 filter's rerank (knn_rerank.h): float64 rows of K < 32 from float32 rows of 32.
void knn_rerank(uintptr_t points, uintptr_t queries, uintptr_t lengths, uintptr_t cand_dists, uintptr_t cand_idx,
                uintptr_t supers32, int64_t super_tiles, uintptr_t out_rows, uintptr_t dists, uintptr_t idx,
                uintptr_t todo, int64_t B, int64_t P, int64_t K, int device, uintptr_t stream) {
  if (K < 1 || K >= m3ad::kFilterM)
    throw std::invalid_argument("knn_rerank: K must be in [1, 32), got " + std::to_string(K));
  m3ad::KnnRerankParams p;
  p.points = as_ptr<const double>(points);
  p.queries = as_ptr<const double>(queries);
  p.lengths = as_ptr<const int64_t>(lengths);
  p.cand_dists = as_ptr<const float>(cand_dists);
  p.cand_idx = as_ptr<const int64_t>(cand_idx);
  p.supers32 = as_ptr<const float>(supers32);
  p.super_tiles = super_tiles;
  p.out_rows = as_ptr<const int64_t>(out_rows);
  p.dists = as_ptr<double>(dists);
  p.idx = as_ptr<int64_t>(idx);
  p.todo = as_ptr<uint8_t>(todo);
  p.B = B, p.P = P, p.K = K;
  dispatch("knn_points", p, make_device(device, stream), m3ad::knn_rerank_cpu, M3AD_CUDA_FN(m3ad::knn_rerank_cuda));
}

void morton_frame(uintptr_t points, uintptr_t lengths, uintptr_t lo, uintptr_t scale, int64_t B, int64_t P, int dtype,
                  int device, uintptr_t stream) {
  m3ad::FrameParams p;
  p.points = as_ptr<const void>(points);
  p.lengths = as_ptr<const int64_t>(lengths);
  p.lo = as_ptr<void>(lo);
  p.scale = as_ptr<void>(scale);
  p.B = B, p.P = P;
  p.dtype = m3ad::to_dtype(dtype);
  dispatch("morton_frame", p, make_device(device, stream), m3ad::morton_frame_cpu, M3AD_CUDA_FN(m3ad::morton_frame_cuda));
}

void morton_codes(uintptr_t points, uintptr_t lengths, uintptr_t lo, uintptr_t scale, uintptr_t codes, int64_t B,
                  int64_t P, int dtype, int device, uintptr_t stream) {
  m3ad::MortonParams p;
  p.points = as_ptr<const void>(points);
  p.lengths = as_ptr<const int64_t>(lengths);
  p.lo = as_ptr<const void>(lo);
  p.scale = as_ptr<const void>(scale);
  p.codes = as_ptr<int64_t>(codes);
  p.B = B, p.P = P;
  p.dtype = m3ad::to_dtype(dtype);
  dispatch("morton_codes", p, make_device(device, stream), m3ad::morton_codes_cpu, M3AD_CUDA_FN(m3ad::morton_codes_cuda));
}

void tile_boxes(uintptr_t points, uintptr_t lengths, uintptr_t boxes, uintptr_t supers, int64_t B, int64_t P,
                int64_t tiles, int64_t super_tiles, int dtype, int device, uintptr_t stream) {
  m3ad::TileBoxParams p;
  p.points = as_ptr<const void>(points);
  p.lengths = as_ptr<const int64_t>(lengths);
  p.boxes = as_ptr<void>(boxes);
  p.supers = as_ptr<void>(supers);
  p.B = B, p.P = P, p.tiles = tiles, p.super_tiles = super_tiles;
  p.dtype = m3ad::to_dtype(dtype);
  dispatch("tile_boxes", p, make_device(device, stream), m3ad::tile_boxes_cpu, M3AD_CUDA_FN(m3ad::tile_boxes_cuda));
}

void ball_query(uintptr_t p1, uintptr_t p2, uintptr_t lengths1, uintptr_t lengths2, uintptr_t dists,
                uintptr_t idx, int64_t B, int64_t P1, int64_t P2, int64_t D, int64_t K, double radius2,
                int dtype, int device, uintptr_t stream) {
  auto p = pair_query<m3ad::BallQueryParams>(p1, p2, lengths1, lengths2, dists, idx, B, P1, P2, D, K, dtype);
  p.radius2 = radius2;
  dispatch("ball_query", p, make_device(device, stream), m3ad::ball_query_cpu, M3AD_CUDA_FN(m3ad::ball_query_cuda));
}

void coalesce_rows(uintptr_t idx, uintptr_t w, uintptr_t out_idx, uintptr_t out_w, uintptr_t slot,
                   uintptr_t distinct, int64_t B, int64_t R, int64_t E, int64_t U, int64_t N, bool count_only,
                   int dtype) {
  m3ad::CoalesceParams p;
  p.idx = as_ptr<const int64_t>(idx);
  p.w = as_ptr<const void>(w);
  p.out_idx = as_ptr<int64_t>(out_idx);
  p.out_w = as_ptr<void>(out_w);
  p.slot = as_ptr<int64_t>(slot);
  p.distinct = as_ptr<int64_t>(distinct);
  p.B = B, p.R = R, p.E = E, p.U = U, p.N = N, p.count_only = count_only;
  p.dtype = m3ad::to_dtype(dtype);
  m3ad::coalesce_rows_cpu(p);  // CPU only: the CUDA path gathers uncoalesced rows
}

// index_bits 32: idx is int32 (NormalsParams::idx32, CPU only); row_stride: NormalsParams's.
void normals(uintptr_t points, uintptr_t idx, uintptr_t dists, uintptr_t query_index, uintptr_t lengths,
             uintptr_t out_normals, uintptr_t out_curvature, int64_t B, int64_t P, int64_t K,
             double radius2, bool orient, double vx, double vy, double vz, int dtype, int device,
             uintptr_t stream, int index_bits, int64_t row_stride) {
  m3ad::NormalsParams p;
  p.points = as_ptr<const void>(points);
  if (index_bits == 32) p.idx32 = as_ptr<const int32_t>(idx);
  else if (index_bits == 64) p.idx = as_ptr<const int64_t>(idx);
  else throw std::invalid_argument("estimate_normals: index_bits must be 32 or 64");
  if (row_stride != 0 && row_stride < K)
    throw std::invalid_argument("estimate_normals: row_stride must be 0 or >= K");
  p.row_stride = row_stride;
  p.dists = as_ptr<const void>(dists);
  p.query_index = as_ptr<const int64_t>(query_index);
  p.lengths = as_ptr<const int64_t>(lengths);
  p.normals = as_ptr<void>(out_normals);
  p.curvature = as_ptr<void>(out_curvature);
  p.B = B, p.P = P, p.K = K;
  p.radius2 = radius2;
  p.orient = orient;
  p.viewpoint[0] = vx, p.viewpoint[1] = vy, p.viewpoint[2] = vz;
  p.dtype = m3ad::to_dtype(dtype);
  if (!p.idx && !p.idx32 && device >= 0)
    throw std::invalid_argument("estimate_normals: the neighbour search inside the kernel is CPU only");
  dispatch("estimate_normals", p, make_device(device, stream), m3ad::normals_cpu, M3AD_CUDA_FN(m3ad::normals_cuda));
}

// index_bits 32: idx is int32 (FpfhParams::idx32, CPU only); row_start/row_count: packed rows
// (FpfhParams's; int32 only).
void fpfh(uintptr_t points, uintptr_t normals, uintptr_t idx, uintptr_t dists, uintptr_t query_index,
          uintptr_t workspace, uintptr_t out, int64_t B, int64_t P, int64_t K, double radius2,
          int dtype, int device, uintptr_t stream, int index_bits, uintptr_t row_start, uintptr_t row_count) {
  m3ad::FpfhParams p;
  p.points = as_ptr<const void>(points);
  p.normals = as_ptr<const void>(normals);
  if (index_bits == 32) p.idx32 = as_ptr<const int32_t>(idx);
  else if (index_bits == 64) p.idx = as_ptr<const int64_t>(idx);
  else throw std::invalid_argument("fpfh: index_bits must be 32 or 64");
  p.dists = as_ptr<const void>(dists);
  p.query_index = as_ptr<const int64_t>(query_index);
  p.row_start = as_ptr<const int64_t>(row_start);
  p.row_count = as_ptr<const int32_t>(row_count);
  if (!p.row_start != !p.row_count || (p.row_start && !p.idx32))
    throw std::invalid_argument("fpfh: packed rows take both row_start and row_count, and int32 indices");
  p.spfh = as_ptr<double>(workspace);
  p.out = as_ptr<void>(out);
  p.B = B, p.P = P, p.K = K;
  p.radius2 = radius2;
  p.dtype = m3ad::to_dtype(dtype);
  dispatch("fpfh", p, make_device(device, stream), m3ad::fpfh_cpu, M3AD_CUDA_FN(m3ad::fpfh_cuda));
}

// ---- metrics ----
// Exact integers (up to 256 bits) cross to Python as Python ints.
py::int_ to_pyint(const uint64_t* limbs, int n) {
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (int i = n - 1; i >= 0; --i)
    for (int sh = 60; sh >= 0; sh -= 4) s.push_back(hex[(limbs[i] >> sh) & 0xf]);
  return py::reinterpret_steal<py::int_>(PyLong_FromString(s.c_str(), nullptr, 16));
}
py::int_ to_pyint(m3ad::metrics::u128 v) {
  const uint64_t l[2] = {static_cast<uint64_t>(v), static_cast<uint64_t>(v >> 64)};
  return to_pyint(l, 2);
}
py::int_ to_pyint(const m3ad::metrics::U256& v) { return to_pyint(v.w, 4); }

// Builds the interval table; `alloc(nbytes) -> address` hands out scratch memory for the CUDA
// build (torch.empty buffers owned by the caller until this returns), `alloc_host` (optional)
// host memory for its copy of the table (pinned torch buffers).
std::function<void*(size_t)> py_allocator(const py::object& fn_obj) {
  if (fn_obj.is_none()) return nullptr;
  PyObject* fn = fn_obj.ptr();  // borrowed: the caller keeps it alive for the duration of the call
  return [fn](size_t nbytes) -> void* {
    py::gil_scoped_acquire gil;
    return reinterpret_cast<void*>(py::handle(fn)(nbytes).cast<uintptr_t>());
  };
}

std::shared_ptr<m3ad::metrics::Table> metrics_build(uintptr_t maps, uintptr_t masks, int64_t N, int64_t H, int64_t W,
                                                     int dtype, int device, uintptr_t stream, const py::object& alloc,
                                                     const py::object& alloc_host, bool need_regions, bool profile,
                                                     int search, bool join_runs) {
  m3ad::metrics::BuildParams p;
  p.maps = as_ptr<const void>(maps);
  p.masks = as_ptr<const uint8_t>(masks);
  p.N = N, p.H = H, p.W = W;
  p.dtype = m3ad::to_dtype(dtype);
  p.alloc = py_allocator(alloc);
  p.alloc_host = py_allocator(alloc_host);
  p.need_regions = need_regions;
  p.profile = profile;
  p.search = search;
  p.join_runs = join_runs;
  auto t = std::make_shared<m3ad::metrics::Table>();
  py::gil_scoped_release nogil;
  dispatch("metrics", p, make_device(device, stream),
           [&](const m3ad::metrics::BuildParams& q) { m3ad::metrics::build_table_cpu(q, *t); },
           [&](const m3ad::metrics::BuildParams& q, const Device& d) {
#ifdef M3AD_WITH_CUDA
             m3ad::metrics::build_table_cuda(q, d, *t);
#else
             (void)q, (void)d;
#endif
           });
  return t;
}

void bind_metrics(py::module_& m) {
  using m3ad::metrics::Table;
  py::class_<Table, std::shared_ptr<Table>>(m, "MetricsTable")
      .def("stats", [](const Table& t) {
        const auto& s = t.stats;
        py::dict d;
        d["n_pixels"] = s.n_pixels, d["n_neg"] = s.n_neg, d["n_pos"] = s.n_pos;
        d["n_regions"] = s.n_regions, d["n_groups"] = s.n_groups, d["n_table"] = s.n_table;
        d["n_nonfinite"] = s.n_nonfinite, d["first_nonfinite"] = s.first_nonfinite;
        d["n_nonbinary"] = s.n_nonbinary, d["first_nonbinary"] = s.first_nonbinary;
        return d;
      })
      // The table itself, for tests: btw, eq, pos (uint64) and wsum as (m, 2) uint64 (low, high).
      .def("arrays", [](const Table& t) {
        auto u64 = [](const std::vector<uint64_t>& v) {
          py::array_t<uint64_t> a(static_cast<py::ssize_t>(v.size()));
          std::copy(v.begin(), v.end(), a.mutable_data());
          return a;
        };
        py::array_t<uint64_t> w({static_cast<py::ssize_t>(t.wsum.size()), py::ssize_t{2}});
        uint64_t* wp = w.mutable_data();
        for (size_t i = 0; i < t.wsum.size(); ++i)
          wp[2 * i] = static_cast<uint64_t>(t.wsum[i]), wp[2 * i + 1] = static_cast<uint64_t>(t.wsum[i] >> 64);
        py::dict d;
        d["btw"] = u64(t.btw), d["eq"] = u64(t.eq), d["pos"] = u64(t.pos), d["wsum"] = w;
        return d;
      })
      // [(phase, milliseconds, "gpu" | "host")] in the order measured (BuildParams::profile).
      .def("profile", [](const Table& t) {
        py::list out;
        for (const auto& ph : t.profile) out.append(py::make_tuple(ph.name, ph.ms, ph.device ? "gpu" : "host"));
        return out;
      })
      .def("query", [](const Table& t, const std::vector<int64_t>& c_lims, const std::vector<int64_t>& ranks) {
        m3ad::metrics::QueryResult r;
        {
          py::gil_scoped_release nogil;
          r = t.query(c_lims, ranks);
        }
        py::dict d;
        d["roc2"] = to_pyint(r.roc2);
        d["s_total"] = to_pyint(r.s_total);
        py::list area, cross, rank_s;
        for (const auto& a : r.area) area.append(to_pyint(a));
        for (const auto& x : r.cross) {
          if (x.found) cross.append(py::make_tuple(x.c0, to_pyint(x.s0), x.c1, to_pyint(x.s1)));
          else cross.append(py::none());
        }
        for (const auto& v : r.rank_s) rank_s.append(to_pyint(v));
        d["area"] = area, d["cross"] = cross, d["rank_s"] = rank_s;
        return d;
      }, py::arg("c_lims"), py::arg("ranks"))
      .def("curve", [](const Table& t) {
        // Vertices as float64: fpr = C / n_neg, pro = S / (n_regions * 2^96), tpr = P / n_pos.
        std::vector<uint64_t> c, p;
        std::vector<m3ad::metrics::u128> s;
        {
          py::gil_scoped_release nogil;
          t.curve(c, p, s);
        }
        const size_t n = c.size();
        py::array_t<double> fpr(n), pro(n), tpr(n);
        double* f = fpr.mutable_data();
        double* o = pro.mutable_data();
        double* r = tpr.mutable_data();
        const double nn = static_cast<double>(t.stats.n_neg), np = static_cast<double>(t.stats.n_pos);
        const double nr = static_cast<double>(t.stats.n_regions);
        for (size_t i = 0; i < n; ++i) {
          f[i] = nn > 0 ? static_cast<double>(c[i]) / nn : 0.0;
          r[i] = np > 0 ? static_cast<double>(p[i]) / np : 0.0;
          o[i] = nr > 0 ? std::ldexp(static_cast<double>(s[i]), -m3ad::metrics::kWeightBits) / nr : 0.0;
        }
        return py::make_tuple(fpr, pro, tpr);
      });
  m.def("metrics_build", &metrics_build, py::arg("maps"), py::arg("masks"), py::arg("N"), py::arg("H"), py::arg("W"),
        py::arg("dtype"), py::arg("device"), py::arg("stream"), py::arg("alloc"), py::arg("alloc_host") = py::none(),
        py::arg("need_regions") = true, py::arg("profile") = false, py::arg("search") = 0,
        py::arg("join_runs") = true, py::call_guard<m3ad::IeeeFpMode>());
}

}  // namespace

// The CUDA emulator's build of these same sources (tools/cuda_emu) names its module _C_emu.
#ifndef M3AD_MODULE_NAME
#define M3AD_MODULE_NAME _C
#endif

PYBIND11_MODULE(M3AD_MODULE_NAME, m) {
  m.doc() = "mentor3ad_ext compiled kernels (torch-free; see mentor3ad_ext/ops for the API)";
  // Every kernel call releases the GIL and runs in the IEEE floating-point mode (common/fp_mode.h).
  const auto nogil = py::call_guard<py::gil_scoped_release, m3ad::IeeeFpMode>();
  m.def("build_info", &build_info);
  m.def("get_num_threads", &m3ad::get_num_threads);
  m.def("set_num_threads", &m3ad::set_num_threads, py::arg("n"), nogil);
  m.def("first_non_finite", [](uintptr_t data, int64_t n, int dtype) {
    return m3ad::first_non_finite(as_ptr<const void>(data), n, m3ad::to_dtype(dtype));
  }, nogil);

  // ---- fps ----
  m.def("fps", &fps, nogil);
  m.def("fps_workspace_bytes", &fps_workspace_bytes);
  // ---- scatter ----
  m.def("rows_plan", &rows_plan, nogil);
  m.def("rows_plan_workspace_bytes", &rows_plan_workspace_bytes);
  m.def("segment_reduce", &segment_reduce, nogil);
  m.def("rows_dot", &rows_dot, nogil);
  m.def("scatter_max_backward", &scatter_max_backward, nogil);
  // ---- projection ----
  m.def("pixel_corners", &pixel_corners, nogil);
  m.def("pixel_corners_backward", &pixel_corners_backward, nogil);
  // ---- knn ----
  m.def("knn", &knn, nogil);
  // The CUDA kNN's block-select rule, for the adapter's choice against the sorted tiles.
  m.def("knn_block_select_pays", &m3ad::knn_block_select_pays);
  m.def("knn_tiles", &knn_tiles, nogil);
  m.def("knn_rerank", &knn_rerank, nogil);
  m.def("knn_within", &knn_within, nogil);  // CPU
  m.def("morton_frame", &morton_frame, nogil);
  m.def("morton_codes", &morton_codes, nogil);
  m.def("tile_boxes", &tile_boxes, nogil);
  m.def("morton_order", [](uintptr_t points, uintptr_t lengths, int64_t B, int64_t P, int dtype, uintptr_t order) {
    m3ad::morton_order_cpu(as_ptr<const void>(points), as_ptr<const int64_t>(lengths), B, P, m3ad::to_dtype(dtype),
                           as_ptr<int64_t>(order));
  }, nogil);  // CPU
  // The feature-space filter's CPU candidate step (ops/_knn_dense.py).
  m.def("row_smallest", [](uintptr_t a, int64_t rows, int64_t n, int64_t k, int dtype, uintptr_t vals,
                           uintptr_t idx) {
    if (rows < 0 || k < 1 || k > n)
      throw std::invalid_argument("row_smallest: needs rows >= 0 and 1 <= m <= n, got rows " +
                                  std::to_string(rows) + ", n " + std::to_string(n) + ", m " + std::to_string(k));
    m3ad::row_smallest(as_ptr<const void>(a), rows, n, k, m3ad::to_dtype(dtype), as_ptr<void>(vals),
                       as_ptr<int64_t>(idx));
  }, nogil);
  // ---- ball_query ----
  m.def("ball_query", &ball_query, nogil);
  // ---- coalesce (CPU) ----
  m.def("coalesce_rows", &coalesce_rows, nogil);
  // ---- normals ----
  m.def("normals", &normals, nogil);
  // ---- fpfh ----
  m.def("fpfh", &fpfh, nogil);
  m.def("fpfh_workspace_bytes", &m3ad::fpfh_workspace_bytes);
  // ---- metrics ----
  bind_metrics(m);
  // ---- end of op bindings ----
}
