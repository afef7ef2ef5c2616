// The only translation unit that knows Python. Every op entry takes raw addresses (Python ints
// from tensor.data_ptr()), sizes, a dtype tag and a device/stream, fills a plain parameter struct
// and calls the CPU or CUDA kernel with the GIL released. Validation is the adapter's job
// (mentor3ad_ext/ops); kernels only clamp what could otherwise read out of bounds.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "common/parallel.h"
#include "ball_query/ball_query.h"
#include "fpfh/fpfh.h"
#include "fps/fps.h"
#include "knn/knn.h"
#include "normals/normals.h"

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
  info["threading"] = "std::thread pool";
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

void knn(uintptr_t p1, uintptr_t p2, uintptr_t lengths1, uintptr_t lengths2, uintptr_t dists,
         uintptr_t idx, int64_t B, int64_t P1, int64_t P2, int64_t D, int64_t K, int norm, int dtype,
         int device, uintptr_t stream) {
  m3ad::KnnParams p;
  p.p1 = as_ptr<const void>(p1);
  p.p2 = as_ptr<const void>(p2);
  p.lengths1 = as_ptr<const int64_t>(lengths1);
  p.lengths2 = as_ptr<const int64_t>(lengths2);
  p.dists = as_ptr<void>(dists);
  p.idx = as_ptr<int64_t>(idx);
  p.B = B, p.P1 = P1, p.P2 = P2, p.D = D, p.K = K, p.norm = norm;
  p.dtype = m3ad::to_dtype(dtype);
  dispatch("knn_points", p, make_device(device, stream), m3ad::knn_cpu, M3AD_CUDA_FN(m3ad::knn_cuda));
}

void ball_query(uintptr_t p1, uintptr_t p2, uintptr_t lengths1, uintptr_t lengths2, uintptr_t dists,
                uintptr_t idx, int64_t B, int64_t P1, int64_t P2, int64_t D, int64_t K, double radius2,
                int dtype, int device, uintptr_t stream) {
  m3ad::BallQueryParams p;
  p.p1 = as_ptr<const void>(p1);
  p.p2 = as_ptr<const void>(p2);
  p.lengths1 = as_ptr<const int64_t>(lengths1);
  p.lengths2 = as_ptr<const int64_t>(lengths2);
  p.dists = as_ptr<void>(dists);
  p.idx = as_ptr<int64_t>(idx);
  p.B = B, p.P1 = P1, p.P2 = P2, p.D = D, p.K = K, p.radius2 = radius2;
  p.dtype = m3ad::to_dtype(dtype);
  dispatch("ball_query", p, make_device(device, stream), m3ad::ball_query_cpu, M3AD_CUDA_FN(m3ad::ball_query_cuda));
}

void normals(uintptr_t points, uintptr_t idx, uintptr_t dists, uintptr_t query_index,
             uintptr_t out_normals, uintptr_t out_curvature, int64_t B, int64_t P, int64_t K,
             double radius2, bool orient, double vx, double vy, double vz, int dtype, int device,
             uintptr_t stream) {
  m3ad::NormalsParams p;
  p.points = as_ptr<const void>(points);
  p.idx = as_ptr<const int64_t>(idx);
  p.dists = as_ptr<const void>(dists);
  p.query_index = as_ptr<const int64_t>(query_index);
  p.normals = as_ptr<void>(out_normals);
  p.curvature = as_ptr<void>(out_curvature);
  p.B = B, p.P = P, p.K = K;
  p.radius2 = radius2;
  p.orient = orient;
  p.viewpoint[0] = vx, p.viewpoint[1] = vy, p.viewpoint[2] = vz;
  p.dtype = m3ad::to_dtype(dtype);
  dispatch("estimate_normals", p, make_device(device, stream), m3ad::normals_cpu, M3AD_CUDA_FN(m3ad::normals_cuda));
}

void fpfh(uintptr_t points, uintptr_t normals, uintptr_t idx, uintptr_t dists, uintptr_t query_index,
          uintptr_t workspace, uintptr_t out, int64_t B, int64_t P, int64_t K, double radius2,
          int dtype, int device, uintptr_t stream) {
  m3ad::FpfhParams p;
  p.points = as_ptr<const void>(points);
  p.normals = as_ptr<const void>(normals);
  p.idx = as_ptr<const int64_t>(idx);
  p.dists = as_ptr<const void>(dists);
  p.query_index = as_ptr<const int64_t>(query_index);
  p.spfh = as_ptr<double>(workspace);
  p.out = as_ptr<void>(out);
  p.B = B, p.P = P, p.K = K;
  p.radius2 = radius2;
  p.dtype = m3ad::to_dtype(dtype);
  dispatch("fpfh", p, make_device(device, stream), m3ad::fpfh_cpu, M3AD_CUDA_FN(m3ad::fpfh_cuda));
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "mentor3ad_ext compiled kernels (torch-free; see mentor3ad_ext/ops for the API)";
  const auto nogil = py::call_guard<py::gil_scoped_release>();
  m.def("build_info", &build_info);
  m.def("get_num_threads", &m3ad::get_num_threads);
  m.def("set_num_threads", &m3ad::set_num_threads, py::arg("n"), nogil);

  // ---- fps ----
  m.def("fps", &fps, nogil);
  m.def("fps_workspace_bytes", &fps_workspace_bytes);
  // ---- knn ----
  m.def("knn", &knn, nogil);
  // ---- ball_query ----
  m.def("ball_query", &ball_query, nogil);
  // ---- normals ----
  m.def("normals", &normals, nogil);
  // ---- fpfh ----
  m.def("fpfh", &fpfh, nogil);
  m.def("fpfh_workspace_bytes", &m3ad::fpfh_workspace_bytes);
  // ---- end of op bindings ----
}
