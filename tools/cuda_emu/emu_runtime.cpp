// The emulator's scheduler and runtime API (declarations and the model in include/cuda_runtime.h).
// A block's threads are fibers with their own stacks, switched by emu_switch (x86-64 only). The
// scheduler resumes the live fibers in a freshly shuffled order on every pass; a fiber runs until
// it finishes or waits at a barrier. A pass in which no fiber moves is a deadlock: some thread
// left (or never reached) a barrier or a full-mask warp intrinsic that others wait at.
#include <cuda_runtime.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(M3AD_EMU_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

#if !defined(__x86_64__)
#error "the CUDA emulator's fiber switch is written for x86-64"
#endif

thread_local uint3 threadIdx EMU_TLS;
thread_local uint3 blockIdx EMU_TLS;
thread_local dim3 blockDim EMU_TLS;
thread_local dim3 gridDim EMU_TLS;

extern "C" void emu_switch(void** save_sp, void* to_sp);
// Saves the callee-saved registers on the current stack, stores the stack pointer in *save_sp,
// and resumes the fiber whose stack pointer is to_sp. The SSE/x87 control words are not
// switched: nothing in the kernels changes rounding or exception modes.
asm(R"(
.text
.globl emu_switch
.hidden emu_switch
.type emu_switch,@function
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size emu_switch,.-emu_switch
)");

namespace emu {
namespace {

constexpr size_t kStackBytes = size_t{256} << 10;
constexpr size_t kGuardBytes = 4096;
constexpr int kMaxThreads = 1024;
constexpr size_t kDefaultDynamicSmem = 48 << 10;  // without an opt-in
constexpr size_t kMaxDynamicSmem = 227 << 10;     // sm_90's opt-in limit
constexpr size_t kMaxStaticSmem = 48 << 10;
constexpr size_t kBlockMemory = kMaxStaticSmem + kMaxDynamicSmem + 4096;

enum class Wait { kNone, kBlock, kWarp };

struct Fiber {
  void* sp = nullptr;
  void* asan_fake = nullptr;
  void* tsan = nullptr;
  uint3 tid{};
  int warp = 0, lane = 0;
  bool done = false;
  Wait wait = Wait::kNone;
};

struct WarpState {
  int arrived = 0;
  uint64_t gen = 0;
  uint64_t slots[2][32];  // double-buffered by generation parity
};

// Per OS thread (sched()): concurrent launches from several host threads stay apart.
struct Scheduler {
  char* stacks = nullptr;  // kMaxThreads stacks, each with a guard page below it
  std::vector<Fiber> fibers;
  std::vector<WarpState> warps;
  std::vector<int> order;
  unsigned char* block_memory = nullptr;  // [static shared arena | dynamic shared memory]
  // This block's static shared variables, in the arena. Fixed storage and a hand-written name
  // comparison: under TSan, the intercepted malloc/memcmp would be taken for CUDA threads' accesses.
  struct SharedVar {
    const char* name;
    size_t offset;
  };
  SharedVar shared_vars[64];
  int n_shared_vars = 0;
  size_t arena_used = 0;
  unsigned char* arena = nullptr;
  unsigned char* smem = nullptr;
  size_t smem_bytes = 0;
  size_t smem_limit = 0;  // the launched kernel's limit on static + dynamic shared memory
  void* host_tsan = nullptr;
  char launch_token = 0, grid_done_token = 0;  // ThreadSanitizer sync objects of the launch
  // The block's: __syncthreads at [0], warp w at [1 + w]; in block memory, so they are fresh per
  // block under TSan (edges between blocks of one launch would hide races between them).
  char* block_tokens = nullptr;
  void* sched_sp = nullptr;
  void* sched_asan_fake = nullptr;
  const void* host_bottom = nullptr;  // the OS thread's stack, for AddressSanitizer
  size_t host_size = 0;
  int cur = -1, live = 0, nthreads = 0, block_arrived = 0;
  uint64_t block_gen = 0;
  bool progressed = false;
  void (*body)(void*) = nullptr;
  void* ctx = nullptr;
  uint64_t rng = 0;
  std::string error;

  ~Scheduler() {
    if (stacks) munmap(stacks, (kStackBytes + kGuardBytes) * kMaxThreads);
    if (block_memory) munmap(block_memory, kBlockMemory);
  }
};

// One scheduler per OS thread, created on first use. The pointer is trivially initialised (no
// TLS wrapper call on access); the owner frees it when the thread exits.
thread_local Scheduler* tls_sched EMU_TLS = nullptr;
struct SchedulerOwner {
  Scheduler* s = nullptr;
  ~SchedulerOwner() { delete s; }
};
thread_local SchedulerOwner tls_owner;
thread_local cudaError_t last_error EMU_TLS = cudaSuccess;
thread_local int current_device EMU_TLS = 0;

Scheduler& sched() {
  if (Scheduler* s = tls_sched) return *s;
  tls_owner.s = tls_sched = new Scheduler;
  return *tls_sched;
}

uint64_t next_random(uint64_t& s) {
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

uint64_t seed_from_env() {
  const char* e = std::getenv("MENTOR3AD_EMU_SEED");
  const uint64_t s = e ? std::strtoull(e, nullptr, 10) : 1;
  return s ? s * 0x9E3779B97F4A7C15ull : 0x9E3779B97F4A7C15ull;
}

// Uniform in [0, n) by multiply-shift: the scheduler reshuffles every pass, and a 64-bit modulo
// per fiber was most of an emulated warp reduction's cost.
uint32_t below(uint64_t& rng, uint32_t n) {
  return static_cast<uint32_t>(((next_random(rng) >> 32) * n) >> 32);
}

void shuffle(std::vector<int>& v, uint64_t& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(rng, static_cast<uint32_t>(i))]);
}

// AddressSanitizer must be told about every stack switch (no-ops in other builds).
#if defined(__SANITIZE_ADDRESS__)
void asan_enter(void** save, const void* bottom, size_t size) { __sanitizer_start_switch_fiber(save, bottom, size); }
void asan_entered(void* save, const void** bottom, size_t* size) { __sanitizer_finish_switch_fiber(save, bottom, size); }
#else
void asan_enter(void**, const void*, size_t) {}
void asan_entered(void*, const void**, size_t*) {}
#endif

// ThreadSanitizer (M3AD_EMU_TSAN, kernels built with -fsanitize=thread, this file not): every
// CUDA thread is a TSan fiber, switched without implied synchronisation, so the only
// happens-before edges TSan sees are CUDA's: launch start and end, __syncthreads, warp
// intrinsics and atomics. Two threads of a launch touching the same byte otherwise is a race.
#if defined(M3AD_EMU_TSAN)
void* tsan_new_fiber() { return __tsan_create_fiber(0); }
void tsan_free_fiber(void* f) { __tsan_destroy_fiber(f); }
void tsan_switch(void* f) { __tsan_switch_to_fiber(f, __tsan_switch_to_fiber_no_sync); }
void* tsan_current() { return __tsan_get_current_fiber(); }
void tsan_release(void* a) { __tsan_release(a); }
void tsan_acquire(void* a) { __tsan_acquire(a); }
constexpr bool kTsan = true;
#else
void* tsan_new_fiber() { return nullptr; }
void tsan_free_fiber(void*) {}
void tsan_switch(void*) {}
void* tsan_current() { return nullptr; }
void tsan_release(void*) {}
void tsan_acquire(void*) {}
constexpr bool kTsan = false;
#endif

char* stack_bottom(int t) { return sched().stacks + (kStackBytes + kGuardBytes) * t + kGuardBytes; }

// Fiber -> scheduler. `finished`: this fiber's stack is dead and never resumed.
void to_scheduler(Fiber& f, bool finished) {
  tsan_switch(sched().host_tsan);
  asan_enter(finished ? nullptr : &f.asan_fake, sched().host_bottom, sched().host_size);
  emu_switch(&f.sp, sched().sched_sp);
  asan_entered(f.asan_fake, &sched().host_bottom, &sched().host_size);
}

[[noreturn]] void fiber_entry() {
  asan_entered(nullptr, &sched().host_bottom, &sched().host_size);
  tsan_acquire(&sched().launch_token);
  sched().body(sched().ctx);
  tsan_release(&sched().grid_done_token);
  Fiber& f = sched().fibers[sched().cur];
  f.done = true;
  --sched().live;
  sched().progressed = true;
  to_scheduler(f, true);
  std::abort();  // a finished fiber is never resumed
}

void* fresh_stack(int t) {
  char* top = stack_bottom(t) + kStackBytes;
  auto* sp = reinterpret_cast<uint64_t*>(reinterpret_cast<uintptr_t>(top) & ~uintptr_t{15});
  *--sp = 0;  // return address of fiber_entry, which never returns
  *--sp = reinterpret_cast<uint64_t>(&fiber_entry);
  for (int r = 0; r < 6; ++r) *--sp = 0;  // rbp, rbx, r12-r15
  return sp;
}

void* map_anonymous(void* at, size_t bytes) {
  void* m = mmap(at, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | (at ? MAP_FIXED : 0), -1, 0);
  if (m == MAP_FAILED) throw std::runtime_error("cuda emulator: cannot map fiber stacks or shared memory");
  return m;
}

void ensure_memory() {
  Scheduler& s = sched();
  if (s.stacks) return;
  const size_t per = kStackBytes + kGuardBytes;
  s.stacks = static_cast<char*>(map_anonymous(nullptr, per * kMaxThreads));
  if (!kTsan)  // under TSan the stacks are remapped per block (below), guards would be lost anyway
    for (int t = 0; t < kMaxThreads; ++t) mprotect(s.stacks + per * t, kGuardBytes, PROT_NONE);
  s.block_memory = static_cast<unsigned char*>(map_anonymous(nullptr, kBlockMemory));
  s.arena = s.block_memory;
  s.smem = s.block_memory + kMaxStaticSmem;
  s.block_tokens = reinterpret_cast<char*>(s.smem + kMaxDynamicSmem);
}

// Under TSan every block gets fresh stacks and shared memory: remapping resets TSan's shadow, so
// the previous block's accesses to the same addresses (other memory in CUDA) are not races.
void fresh_block_memory(int nthreads) {
  if (!kTsan) return;
  Scheduler& s = sched();
  // Only the top of each stack: kernels use a few KiB, and remapping whole stacks (and
  // resetting their shadow) made every block cost milliseconds.
  constexpr size_t kUsedStack = 32 << 10;
  for (int t = 0; t < nthreads; ++t) map_anonymous(stack_bottom(t) + kStackBytes - kUsedStack, kUsedStack);
  map_anonymous(s.block_memory, kBlockMemory);
}

// Back to the scheduler; returns when this fiber is resumed.
void yield() { to_scheduler(sched().fibers[sched().cur], false); }

void fail(const std::string& what) {
  if (sched().error.empty()) sched().error = what;
}

std::string describe_waits() {
  int block = 0, warp = 0, done = 0;
  for (const Fiber& f : sched().fibers) {
    if (f.done) ++done;
    else if (f.wait == Wait::kBlock) ++block;
    else if (f.wait == Wait::kWarp) ++warp;
  }
  return std::to_string(block) + " threads wait at __syncthreads, " + std::to_string(warp) +
         " at a warp intrinsic, " + std::to_string(done) + " have exited";
}

bool run_block(const char* name) {
  fresh_block_memory(sched().nthreads);
  std::memset(sched().smem, 0xA5, sched().smem_bytes);  // garbage, as uninitialised shared memory is
  tsan_release(&sched().launch_token);  // after the host's last write before the block runs
  sched().n_shared_vars = 0;
  sched().arena_used = 0;
  sched().live = sched().nthreads;
  sched().block_arrived = 0;
  for (int t = 0; t < sched().nthreads; ++t) {
    Fiber& f = sched().fibers[t];
    f.sp = fresh_stack(t);
    f.done = false;
    f.wait = Wait::kNone;
    f.tsan = tsan_new_fiber();
  }
  for (WarpState& w : sched().warps) w.arrived = 0;
  while (sched().live > 0) {
    sched().progressed = false;
    shuffle(sched().order, sched().rng);
    for (int t : sched().order) {
      Fiber& f = sched().fibers[t];
      if (f.done) continue;
      sched().cur = t;
      threadIdx = f.tid;
      asan_enter(&sched().sched_asan_fake, stack_bottom(t), kStackBytes);
      tsan_switch(f.tsan);
      emu_switch(&sched().sched_sp, f.sp);
      asan_entered(sched().sched_asan_fake, nullptr, nullptr);
    }
    if (!sched().error.empty()) break;
    if (!sched().progressed) {
      fail(std::string("deadlock in kernel ") + name + ": " + describe_waits());
      break;
    }
  }
  sched().cur = -1;
  for (Fiber& f : sched().fibers) tsan_free_fiber(f.tsan);
  if (sched().error.empty()) return true;
  std::fprintf(stderr, "cuda emulator: %s (block %u,%u,%u)\n", sched().error.c_str(), blockIdx.x, blockIdx.y, blockIdx.z);
  return false;
}

// Per-kernel opt-ins (cudaFuncAttributeMaxDynamicSharedMemorySize); host threads may launch
// concurrently, hence the lock.
std::mutex attr_mutex;
std::map<const void*, size_t> smem_optin;

size_t dynamic_smem_limit(const void* kernel) {
  std::lock_guard<std::mutex> lock(attr_mutex);
  const auto it = smem_optin.find(kernel);
  return it == smem_optin.end() ? kDefaultDynamicSmem : it->second;
}

// Static plus dynamic shared memory of a block: 48 KiB without an opt-in; with one, the opt-in
// attribute bounds the dynamic part alone and the device's opt-in limit the sum (as in CUDA).
size_t total_smem_limit(const void* kernel) {
  std::lock_guard<std::mutex> lock(attr_mutex);
  return smem_optin.count(kernel) ? kMaxDynamicSmem : kDefaultDynamicSmem;
}

std::string geometry_error(const void* kernel, dim3 g, dim3 b, size_t smem) {
  const uint64_t threads = uint64_t{b.x} * b.y * b.z;
  if (threads == 0 || threads > kMaxThreads || b.x > 1024 || b.y > 1024 || b.z > 64)
    return "invalid block " + std::to_string(b.x) + "x" + std::to_string(b.y) + "x" + std::to_string(b.z);
  if (g.x == 0 || g.y == 0 || g.z == 0 || g.x > 2147483647u || g.y > 65535 || g.z > 65535)
    return "invalid grid " + std::to_string(g.x) + "x" + std::to_string(g.y) + "x" + std::to_string(g.z);
  const size_t limit = dynamic_smem_limit(kernel);
  if (smem > limit)
    return "dynamic shared memory " + std::to_string(smem) + " > the kernel's limit of " + std::to_string(limit) +
           (limit == kDefaultDynamicSmem ? " (48 KiB without cudaFuncAttributeMaxDynamicSharedMemorySize)" : "");
  return "";
}

// MENTOR3AD_EMU_TRACE=FILE appends one line per launch (kernel, grid, block): which kernels and
// which of their paths the tests reach.
void trace(const char* name, dim3 g, dim3 b) {
  static const char* path = std::getenv("MENTOR3AD_EMU_TRACE");
  if (!path) return;
  if (FILE* f = std::fopen(path, "a")) {
    std::fprintf(f, "%s\t%u,%u,%u\t%u,%u,%u\n", name, g.x, g.y, g.z, b.x, b.y, b.z);
    std::fclose(f);
  }
}

}  // namespace

void run_grid(const char* name, const void* kernel, dim3 grid, dim3 block, size_t smem, void (*body)(void*), void* ctx) {
  if (sched().cur >= 0) throw std::logic_error("cuda emulator: kernel launched from device code");
  trace(name, grid, block);
  const std::string geo = geometry_error(kernel, grid, block, smem);
  if (!geo.empty()) {
    std::fprintf(stderr, "cuda emulator: launch of %s: %s\n", name, geo.c_str());
    last_error = cudaErrorInvalidConfiguration;
    return;
  }
  ensure_memory();
  if (!sched().rng) sched().rng = seed_from_env();
  sched().nthreads = static_cast<int>(block.x * block.y * block.z);
  sched().fibers.assign(sched().nthreads, Fiber{});
  sched().warps.assign((sched().nthreads + 31) / 32, WarpState{});
  sched().order.resize(sched().nthreads);
  for (int t = 0; t < sched().nthreads; ++t) {
    Fiber& f = sched().fibers[t];
    f.tid = uint3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
    f.warp = t / 32;
    f.lane = t % 32;
    sched().order[t] = t;
  }
  sched().host_tsan = tsan_current();
  sched().smem_bytes = smem;
  sched().smem_limit = total_smem_limit(kernel);
  sched().body = body;
  sched().ctx = ctx;
  sched().error.clear();
  blockDim = block;
  gridDim = grid;

  // Blocks in a shuffled order too: kernels must not assume one.
  const uint64_t nblocks = uint64_t{grid.x} * grid.y * grid.z;
  std::vector<uint64_t> blocks(nblocks);
  for (uint64_t i = 0; i < nblocks; ++i) blocks[i] = i;
  for (uint64_t i = nblocks; i > 1; --i) std::swap(blocks[i - 1], blocks[next_random(sched().rng) % i]);
  for (uint64_t i : blocks) {
    blockIdx = uint3{static_cast<unsigned>(i % grid.x), static_cast<unsigned>((i / grid.x) % grid.y),
                     static_cast<unsigned>(i / (uint64_t{grid.x} * grid.y))};
    if (!run_block(name)) {
      last_error = cudaErrorLaunchFailure;
      return;
    }
  }
  tsan_acquire(&sched().grid_done_token);
}

void* dynamic_smem() { return sched().smem; }

namespace {
bool same_name(const char* a, const char* b) {
  while (*a && *a == *b) ++a, ++b;
  return *a == *b;
}
}  // namespace

void* shared_alloc(const char* name, size_t bytes, size_t align) {
  Scheduler& s = sched();
  for (int i = 0; i < s.n_shared_vars; ++i)
    if (same_name(s.shared_vars[i].name, name)) return s.arena + s.shared_vars[i].offset;
  const size_t offset = (s.arena_used + align - 1) / align * align;
  if (offset + bytes > kMaxStaticSmem || s.n_shared_vars == 64) {  // nvcc would reject it; so do we
    std::fprintf(stderr, "cuda emulator: static shared memory over 48 KiB or 64 variables at __shared__ %s\n", name);
    std::abort();
  }
  s.shared_vars[s.n_shared_vars++] = {name, offset};
  s.arena_used = offset + bytes;
  // A block's static and dynamic shared memory share one limit (48 KiB, or the device's opt-in
  // limit for a kernel that opted in).
  if (s.arena_used + s.smem_bytes > s.smem_limit)
    fail("static (" + std::to_string(s.arena_used) + " bytes so far) plus dynamic (" + std::to_string(s.smem_bytes) +
         ") shared memory over the block limit of " + std::to_string(s.smem_limit) + " bytes at __shared__ " + name);
  // Garbage, as uninitialised shared memory is. Not under TSan: the arena is freshly mapped
  // there, and TSan would take this fill for the allocating thread's write.
  if (!kTsan) std::memset(s.arena + offset, 0xA5, bytes);
  return s.arena + offset;
}

int lane_id() { return sched().fibers[sched().cur].lane; }

void block_barrier() {
  Fiber& f = sched().fibers[sched().cur];
  sched().progressed = true;
  tsan_release(sched().block_tokens);
  if (++sched().block_arrived == sched().nthreads) {
    sched().block_arrived = 0;
    ++sched().block_gen;
  } else {
    const uint64_t gen = sched().block_gen;
    f.wait = Wait::kBlock;
    while (sched().block_gen == gen) {
      yield();  // after a failure the scheduler abandons the block and never comes back
    }
    f.wait = Wait::kNone;
  }
  tsan_acquire(sched().block_tokens);
}

namespace {

// Deposits `value` for this lane and waits until all 32 lanes of the warp have; returns the
// buffer the deposits went to (valid until the warp's next-but-one exchange).
const uint64_t* warp_arrive(unsigned mask, uint64_t value, const char* what) {
  Fiber& f = sched().fibers[sched().cur];
  if (mask != 0xffffffffu) fail(std::string(what) + ": only full-warp masks are emulated");
  if ((f.warp + 1) * 32 > sched().nthreads)
    fail(std::string(what) + " with a full mask in a partial warp (block of " + std::to_string(sched().nthreads) + " threads)");
  WarpState& w = sched().warps[f.warp];
  const uint64_t gen = w.gen;
  uint64_t* slots = w.slots[gen & 1];
  slots[f.lane] = value;
  sched().progressed = true;
  char* token = sched().block_tokens + 1 + f.warp;
  tsan_release(token);
  if (++w.arrived == 32) {
    w.arrived = 0;
    ++w.gen;
  } else {
    f.wait = Wait::kWarp;
    while (w.gen == gen) {
      yield();
    }
    f.wait = Wait::kNone;
  }
  tsan_acquire(token);
  return slots;
}

}  // namespace

uint64_t warp_exchange(unsigned mask, uint64_t value, int src_lane, const char* what) {
  return warp_arrive(mask, value, what)[src_lane];
}

unsigned warp_ballot(unsigned mask, bool pred) {
  const uint64_t* slots = warp_arrive(mask, pred ? 1 : 0, "__ballot_sync");
  unsigned bits = 0;
  for (int l = 0; l < 32; ++l)
    if (slots[l]) bits |= 1u << l;
  return bits;
}

unsigned warp_match(unsigned mask, uint64_t value) {
  const uint64_t* slots = warp_arrive(mask, value, "__match_any_sync");
  unsigned peers = 0;
  for (int l = 0; l < 32; ++l)
    if (slots[l] == value) peers |= 1u << l;
  return peers;
}

}  // namespace emu

void __threadfence() {}

cudaError_t cudaGetDevice(int* device) {
  *device = emu::current_device;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  if (device != 0) return emu::last_error = cudaErrorInvalidDevice;
  emu::current_device = device;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}

namespace emu {
cudaError_t set_func_attribute(const void* kernel, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || static_cast<size_t>(value) > kMaxDynamicSmem)
    return cudaErrorInvalidValue;
  std::lock_guard<std::mutex> lock(attr_mutex);
  smem_optin[kernel] = static_cast<size_t>(value);
  return cudaSuccess;
}
}  // namespace emu

cudaError_t cudaGetLastError() {
  const cudaError_t e = emu::last_error;
  emu::last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() { return emu::last_error; }

const char* cudaGetErrorString(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument (emulated)";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument (emulated)";
    case cudaErrorInvalidDevice: return "invalid device ordinal (emulated)";
    case cudaErrorLaunchFailure: return "unspecified launch failure (emulated: see stderr)";
  }
  return "unknown error (emulated)";
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind, cudaStream_t) {
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t) {
  if (bytes) std::memset(dst, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t) { return emu::last_error; }
cudaError_t cudaDeviceSynchronize() { return emu::last_error; }

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device != 0) return emu::last_error = cudaErrorInvalidDevice;
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = 48 * 1024; return cudaSuccess;
    case cudaDevAttrWarpSize: *value = 32; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = 4; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = static_cast<int>(emu::kMaxDynamicSmem); return cudaSuccess;
  }
  return emu::last_error = cudaErrorInvalidValue;
}

// An event is the steady-clock time (in nanoseconds) of its last record; -1 before that.
struct CUevent_st {
  int64_t ns = -1;
};

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  if (!event) return emu::last_error = cudaErrorInvalidValue;
  *event = new CUevent_st;
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  if (!event) return emu::last_error = cudaErrorInvalidValue;
  delete event;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t) {
  if (!event) return emu::last_error = cudaErrorInvalidValue;
  event->ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                  std::chrono::steady_clock::now().time_since_epoch()).count();
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  return event ? cudaSuccess : (emu::last_error = cudaErrorInvalidValue);
}

// CUDA returns cudaErrorInvalidResourceHandle for an event never recorded; InvalidValue here.
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!ms || !start || !end || start->ns < 0 || end->ns < 0) return emu::last_error = cudaErrorInvalidValue;
  *ms = static_cast<float>(static_cast<double>(end->ns - start->ns) * 1e-6);
  return cudaSuccess;
}
