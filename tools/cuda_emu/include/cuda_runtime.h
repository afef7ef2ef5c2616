// Host emulation of the slice of the CUDA runtime and device intrinsics that csrc/**/*.cu use,
// so that the CUDA kernels compile with the host C++ compiler and run on host memory (see
// tools/cuda_emu/README.md). Every thread of a block is a fiber on one OS thread; fibers switch
// only at __syncthreads() and warp intrinsics, in a seeded random order, so kernels whose
// result depends on thread or block order show it. It checks launch geometry, barrier and
// full-mask warp participation; it does not model memory spaces or data races.
#pragma once
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// __shared__ is rewritten by translate.py (emu::shared_var); anything left over fails to compile.
#define CUDART_VERSION 13000
// Initial-exec TLS: a plain %fs-relative load. The default model for a dlopen'ed module calls
// __tls_get_addr on every access, which was most of an emulated warp reduction's cost. Only a
// few dozen bytes of TLS exist in the module (shared variables live in the block's arena).
#define EMU_TLS __attribute__((tls_model("initial-exec")))

enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101,
  cudaErrorLaunchFailure = 719,
};
typedef cudaError cudaError_t;
typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;
enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMaxSharedMemoryPerBlock = 8,
  cudaDevAttrWarpSize = 10,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

// Set by the scheduler before it resumes a fiber.
extern thread_local uint3 threadIdx EMU_TLS;
extern thread_local uint3 blockIdx EMU_TLS;
extern thread_local dim3 blockDim EMU_TLS;
extern thread_local dim3 gridDim EMU_TLS;

// ---- runtime API ----
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorString(cudaError_t err);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream = nullptr);
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaDeviceSynchronize();
// Attributes of the emulated device: 32-lane warps, 1024 threads and 48 KiB of dynamic shared
// memory per block without an opt-in, 227 KiB with one (the launch checks), 4 multiprocessors
// (any count is valid; grids are not limited).
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
// Occupancy of the emulated multiprocessor: 2048 threads and 96 KiB of shared memory (static
// shared memory of `kernel` is not known here and counts as zero); 0 for blocks over 1024.
template <typename Kernel>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* num_blocks, Kernel /*kernel*/, int block_size,
                                                          size_t dynamic_smem_bytes) {
  if (!num_blocks || block_size <= 0) return cudaErrorInvalidValue;
  if (block_size > 1024 || dynamic_smem_bytes > 48 * 1024) {
    *num_blocks = 0;
    return cudaSuccess;
  }
  int n = 2048 / block_size;
  if (dynamic_smem_bytes > 0) {
    const int by_smem = static_cast<int>((96 * 1024) / dynamic_smem_bytes);
    n = by_smem < n ? by_smem : n;
  }
  *num_blocks = n;
  return cudaSuccess;
}
// Events: work runs at launch time here, so an event records the host clock when recorded;
// elapsed times are those of the emulated work in between (milliseconds, as in CUDA).
cudaError_t cudaEventCreate(cudaEvent_t* event);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);

// Dynamic shared memory above 48 KiB needs a per-kernel opt-in, as on the device; the emulated
// device's opt-in limit is an sm_90's (227 KiB, cudaDevAttrMaxSharedMemoryPerBlockOptin). The
// occupancy call above does not model opt-ins.
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
namespace emu {
cudaError_t set_func_attribute(const void* kernel, cudaFuncAttribute attr, int value);
}
template <typename... P>
cudaError_t cudaFuncSetAttribute(void (*kernel)(P...), cudaFuncAttribute attr, int value) {
  return emu::set_func_attribute(reinterpret_cast<const void*>(kernel), attr, value);
}

namespace emu {

// Runs body() once per thread of every block of the grid; errors land in cudaGetLastError().
// `kernel` identifies the kernel for its attributes (cudaFuncSetAttribute).
void run_grid(const char* name, const void* kernel, dim3 grid, dim3 block, size_t dynamic_smem, void (*body)(void*),
              void* ctx);
void* dynamic_smem();
// The block's instance of the static shared variable `name` (allocated by its first thread).
void* shared_alloc(const char* name, size_t bytes, size_t align);
template <typename T>
T& shared_var(const char* name) {
  return *static_cast<T*>(shared_alloc(name, sizeof(T), alignof(T)));
}
void block_barrier();
uint64_t warp_exchange(unsigned mask, uint64_t value, int src_lane, const char* what);
unsigned warp_match(unsigned mask, uint64_t value);
unsigned warp_ballot(unsigned mask, bool pred);
int lane_id();

template <typename... P>
struct Bound {
  void (*kernel)(P...);
  std::tuple<std::decay_t<P>...> args;
  static void call(void* self) {
    auto* b = static_cast<Bound*>(self);
    auto copy = b->args;  // every CUDA thread starts from its own copy of the parameters
    std::apply(b->kernel, copy);
  }
};

struct Launch {
  const char* name;
  dim3 grid, block;
  size_t smem;
  template <typename... P, typename... A>
  void operator()(void (*kernel)(P...), A&&... args) const {
    static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
    Bound<P...> b{kernel, std::tuple<std::decay_t<P>...>(static_cast<std::decay_t<P>>(std::forward<A>(args))...)};
    run_grid(name, reinterpret_cast<const void*>(kernel), grid, block, smem, &Bound<P...>::call, &b);
  }
};

// `k<<<g, b, s, st>>>(args)` is rewritten by translate.py to `::emu::launch("k", g, b, s, st)(k, args)`.
inline Launch launch(const char* name, dim3 grid, dim3 block, size_t smem = 0, cudaStream_t = nullptr) {
  return Launch{name, grid, block, smem};
}

template <typename T>
uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "warp intrinsics take <= 8-byte values");
  uint64_t u = 0;
  std::memcpy(&u, &v, sizeof(T));
  return u;
}

template <typename T>
T from_bits(uint64_t u) {
  T v;
  std::memcpy(&v, &u, sizeof(T));
  return v;
}

}  // namespace emu

// ---- device intrinsics ----
inline void __syncthreads() { emu::block_barrier(); }
// Fibers switch only inside the emulator's calls, which the compiler cannot see through, so a
// fence needs nothing more than that.
void __threadfence();

template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = emu::lane_id();
  const int64_t seg = lane - lane % width, src = lane + int64_t{delta};
  return emu::from_bits<T>(
      emu::warp_exchange(mask, emu::to_bits(v), src < seg + width ? static_cast<int>(src) : lane, "__shfl_down_sync"));
}

template <typename T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = emu::lane_id();
  const int64_t seg = lane - lane % width, src = lane - int64_t{delta};
  return emu::from_bits<T>(
      emu::warp_exchange(mask, emu::to_bits(v), src >= seg ? static_cast<int>(src) : lane, "__shfl_up_sync"));
}

template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  const int lane = emu::lane_id();
  const int within = ((src_lane % width) + width) % width;  // CUDA wraps any source lane into the segment
  return emu::from_bits<T>(emu::warp_exchange(mask, emu::to_bits(v), lane - lane % width + within, "__shfl_sync"));
}

template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  const int lane = emu::lane_id();
  const int src = lane ^ lane_mask;  // CUDA: a source outside the lane's segment reads its own value
  const bool inside = src / width == lane / width && src < 32;
  return emu::from_bits<T>(emu::warp_exchange(mask, emu::to_bits(v), inside ? src : lane, "__shfl_xor_sync"));
}

inline void __syncwarp(unsigned mask = 0xffffffffu) { emu::warp_exchange(mask, 0, 0, "__syncwarp"); }

inline unsigned __ballot_sync(unsigned mask, int pred) { return emu::warp_ballot(mask, pred != 0); }
inline int __any_sync(unsigned mask, int pred) { return emu::warp_ballot(mask, pred != 0) != 0; }
inline int __all_sync(unsigned mask, int pred) { return (emu::warp_ballot(mask, pred != 0) & mask) == mask; }

template <typename T>
inline unsigned __match_any_sync(unsigned mask, T v) {
  return emu::warp_match(mask, emu::to_bits(v));
}

inline unsigned __float_as_uint(float f) { return emu::from_bits<unsigned>(emu::to_bits(f)); }
inline float __uint_as_float(unsigned u) { return emu::from_bits<float>(u); }
inline long long __double_as_longlong(double d) { return emu::from_bits<long long>(emu::to_bits(d)); }
inline double __longlong_as_double(long long u) { return emu::from_bits<double>(static_cast<uint64_t>(u)); }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
inline int __ffs(int v) { return __builtin_ffs(v); }
inline int __clz(int v) { return v == 0 ? 32 : __builtin_clz(static_cast<unsigned>(v)); }

// Atomics: compiler atomics (sequentially consistent), so that the ThreadSanitizer build sees
// them as synchronisation; all threads of a launch share one OS thread, so they never contend.
// The operand converts to the pointee type, as with CUDA's overloads (atomicAdd(unsigned*, 1)).
namespace emu {
template <typename T, typename F>
inline T atomic_update(T* a, F next) {
  T old;
  __atomic_load(a, &old, __ATOMIC_SEQ_CST);
  T desired = next(old);
  while (!__atomic_compare_exchange(a, &old, &desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) desired = next(old);
  return old;
}
}  // namespace emu

template <typename T, typename U>
inline T atomicAdd(T* a, U v) {
  return emu::atomic_update(a, [&](T old) { return static_cast<T>(old + static_cast<T>(v)); });
}
template <typename T, typename U>
inline T atomicMin(T* a, U v) {
  return emu::atomic_update(a, [&](T old) { return static_cast<T>(v) < old ? static_cast<T>(v) : old; });
}
template <typename T, typename U>
inline T atomicMax(T* a, U v) {
  return emu::atomic_update(a, [&](T old) { return old < static_cast<T>(v) ? static_cast<T>(v) : old; });
}
template <typename T, typename U>
inline T atomicExch(T* a, U v) {
  return emu::atomic_update(a, [&](T) { return static_cast<T>(v); });
}
template <typename T, typename U, typename V>
inline T atomicCAS(T* a, U cmp, V v) {
  return emu::atomic_update(a, [&](T old) { return old == static_cast<T>(cmp) ? static_cast<T>(v) : old; });
}
