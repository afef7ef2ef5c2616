// The only translation unit that knows Python. Every op entry takes raw addresses (Python ints
// from tensor.data_ptr()), sizes, a dtype tag and a device/stream, fills a plain parameter struct
// and calls the CPU or CUDA kernel with the GIL released. Validation is the adapter's job
// (mentor3ad_ext/ops); kernels only clamp what could otherwise read out of bounds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <vector>

#include <cmath>
#include <cstdint>
#include <string>

#include "common/parallel.h"
#include "fps/fps.h"
#include "metrics/metrics.h"

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
// build (torch.empty buffers owned by the caller until this returns).
std::shared_ptr<m3ad::metrics::Table> metrics_build(uintptr_t maps, uintptr_t masks, int64_t N, int64_t H, int64_t W,
                                                     int dtype, int device, uintptr_t stream, const py::object& alloc) {
  m3ad::metrics::BuildParams p;
  p.maps = as_ptr<const void>(maps);
  p.masks = as_ptr<const uint8_t>(masks);
  p.N = N, p.H = H, p.W = W;
  p.dtype = m3ad::to_dtype(dtype);
  PyObject* fn = alloc.ptr();  // borrowed: the caller keeps it alive for the duration of the call
  p.alloc = [fn](size_t nbytes) -> void* {
    py::gil_scoped_acquire gil;
    return reinterpret_cast<void*>(py::handle(fn)(nbytes).cast<uintptr_t>());
  };
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
        d["n_regions"] = s.n_regions, d["n_groups"] = s.n_groups;
        d["n_nonfinite"] = s.n_nonfinite, d["first_nonfinite"] = s.first_nonfinite;
        d["n_nonbinary"] = s.n_nonbinary, d["first_nonbinary"] = s.first_nonbinary;
        return d;
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
  m.def("metrics_build", &metrics_build);
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
  // ---- metrics ----
  bind_metrics(m);
  // ---- end of op bindings ----
}
