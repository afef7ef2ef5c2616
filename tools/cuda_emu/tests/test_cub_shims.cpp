// Checks the CPU CUB/Thrust shims (tools/cuda_emu/include) against std:: algorithms.
// Build (exit status 0 = pass):
//   g++ -std=c++17 -Wall -Wextra -O1 -I<dir with cuda_runtime.h> -Itools/cuda_emu/include
//       tools/cuda_emu/tests/test_cub_shims.cpp && ./a.out
#include <cuda_runtime.h>

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_reduce.cuh>
#include <cub/device/device_run_length_encode.cuh>
#include <cub/device/device_scan.cuh>
#include <cub/device/device_select.cuh>
#include <cub/util_type.cuh>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <random>
#include <type_traits>
#include <vector>

namespace {

int g_failures = 0;

#define CHECK(cond)                                                   \
  do {                                                                \
    if (!(cond)) {                                                    \
      ++g_failures;                                                   \
      std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);     \
    }                                                                 \
  } while (0)

using u128 = unsigned __int128;
std::mt19937_64 rng(12345);

// Runs CUB's two-phase protocol on `call(temp, bytes)` and checks the protocol itself:
// the query reports a positive size, a buffer one byte short is rejected, the exact size works.
// `untouched` is evaluated after the query and the rejected call: they must not write outputs.
template <typename Call, typename Untouched>
void two_phase(Call call, Untouched untouched) {
  size_t bytes = 0;
  CHECK(call(nullptr, bytes) == cudaSuccess);
  CHECK(bytes > 0);
  CHECK(untouched());
  std::vector<unsigned char> temp(bytes + 1);
  size_t short_bytes = bytes - 1;
  CHECK(call(temp.data(), short_bytes) == cudaErrorInvalidValue);
  CHECK(untouched());
  CHECK(call(temp.data(), bytes) == cudaSuccess);
}

template <typename K>
K random_key(int alphabet) {  // alphabet > 0: few distinct keys, so many duplicates
  const K k = static_cast<K>(rng());
  return alphabet > 0 ? static_cast<K>(k % static_cast<K>(alphabet)) : k;
}

// Reference: stable sort of input positions by bits [b, e) of the key.
template <typename K>
std::vector<size_t> reference_order(const std::vector<K>& keys, int b, int e) {
  auto bits = [&](K k) {
    const int w = e - b;
    if (w == 0) return uint64_t{0};
    const uint64_t mask = w >= 64 ? ~uint64_t{0} : (uint64_t{1} << w) - 1;
    return (static_cast<uint64_t>(k) >> b) & mask;
  };
  std::vector<size_t> order(keys.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return bits(keys[x]) < bits(keys[y]); });
  return order;
}

// Values are the input positions, so stability is checked exactly, not just "some valid order".
template <typename K, typename V>
void test_sort_case(size_t n, int b, int e, int alphabet) {
  std::vector<K> keys(n);
  for (auto& k : keys) k = random_key<K>(alphabet);
  std::vector<V> vals(n);
  std::iota(vals.begin(), vals.end(), V{0});
  const std::vector<size_t> order = reference_order(keys, b, e);
  std::vector<K> want_k(n);
  std::vector<V> want_v(n);
  for (size_t i = 0; i < n; ++i) {
    want_k[i] = keys[order[i]];
    want_v[i] = static_cast<V>(order[i]);
  }

  // Pointer overload; outputs start as a sentinel so the query/error paths can be checked.
  std::vector<K> ko(n, K(7));
  std::vector<V> vo(n, V(7));
  auto clean = [&] {
    return std::all_of(ko.begin(), ko.end(), [](K k) { return k == K(7); }) &&
           std::all_of(vo.begin(), vo.end(), [](V v) { return v == V(7); });
  };
  two_phase(
      [&](void* t, size_t& bytes) {
        return cub::DeviceRadixSort::SortPairs(t, bytes, keys.data(), ko.data(), vals.data(), vo.data(),
                                               static_cast<int64_t>(n), b, e, cudaStream_t{});
      },
      clean);
  CHECK(ko == want_k);
  CHECK(vo == want_v);

  // DoubleBuffer overload: result in Current(), selector flipped, original input untouched.
  std::vector<K> k0 = keys, k1(n, K(7));
  std::vector<V> v0 = vals, v1(n, V(7));
  cub::DoubleBuffer<K> kb(k0.data(), k1.data());
  cub::DoubleBuffer<V> vb(v0.data(), v1.data());
  two_phase(
      [&](void* t, size_t& bytes) { return cub::DeviceRadixSort::SortPairs(t, bytes, kb, vb, n, b, e); },
      [&] { return kb.selector == 0 && vb.selector == 0; });
  CHECK(kb.selector == 1 && vb.selector == 1);
  CHECK(kb.Current() == k1.data() && vb.Current() == v1.data());
  CHECK(kb.Alternate() == k0.data() && vb.Alternate() == v0.data());
  CHECK(std::equal(want_k.begin(), want_k.end(), kb.Current()));
  CHECK(std::equal(want_v.begin(), want_v.end(), vb.Current()));
  CHECK(k0 == keys && v0 == vals);
}

template <typename K, typename V>
void test_sort() {
  const int kb = static_cast<int>(sizeof(K) * 8);
  const int ranges[][2] = {{0, kb}, {0, 1}, {3, 17}, {8, 8}, {5, kb}, {kb, kb}, {kb - 3, kb}, {1, 9}};
  for (size_t n : {size_t{0}, size_t{1}, size_t{2}, size_t{37}, size_t{1000}, size_t{20000}}) {
    for (const auto& r : ranges) {
      for (int alphabet : {0, 5, 300}) test_sort_case<K, V>(n, r[0], r[1], alphabet);
    }
  }
  // Default bit range and the random-subset case.
  for (int trial = 0; trial < 20; ++trial) {
    const int b = static_cast<int>(rng() % (kb + 1));
    const int e = b + static_cast<int>(rng() % (kb - b + 1));
    test_sort_case<K, V>(500 + rng() % 500, b, e, trial % 2 ? 0 : 1000);
  }
}

void test_sort_errors() {
  std::vector<uint32_t> k(4, 1), ko(4);
  std::vector<int64_t> v(4, 1), vo(4);
  size_t bytes = 0;
  // Negative n and out-of-range bits are rejected already at the size query.
  CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, k.data(), ko.data(), v.data(), vo.data(), -1) ==
        cudaErrorInvalidValue);
  CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, k.data(), ko.data(), v.data(), vo.data(), 4, 0, 33) ==
        cudaErrorInvalidValue);
  CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, k.data(), ko.data(), v.data(), vo.data(), 4, 9, 8) ==
        cudaErrorInvalidValue);
  // Required size depends on n: a workspace sized for fewer items is rejected.
  size_t b4 = 0, b8 = 0;
  CHECK(cub::DeviceRadixSort::SortPairs(nullptr, b4, k.data(), ko.data(), v.data(), vo.data(), 4) == cudaSuccess);
  CHECK(cub::DeviceRadixSort::SortPairs(nullptr, b8, k.data(), ko.data(), v.data(), vo.data(), 8u) == cudaSuccess);
  CHECK(b8 > b4);
  // The size query touches no pointer: null keys/values are fine (scatter_cuda.cu does this).
  size_t bn = 0;
  CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bn, static_cast<const uint64_t*>(nullptr),
                                        static_cast<uint64_t*>(nullptr), static_cast<const int64_t*>(nullptr),
                                        static_cast<int64_t*>(nullptr), 100, 0, 40) == cudaSuccess);
  CHECK(bn > 0);
}

void test_select() {
  for (size_t n : {size_t{0}, size_t{1}, size_t{100}, size_t{5000}}) {
    std::vector<uint8_t> flags(n);
    for (auto& f : flags) f = static_cast<uint8_t>(rng() % 3 == 0 ? 0 : rng() % 256);  // any nonzero selects
    const int64_t start = 7;
    std::vector<int64_t> want;
    for (size_t i = 0; i < n; ++i)
      if (flags[i]) want.push_back(start + static_cast<int64_t>(i));
    std::vector<int64_t> out(n, -1);
    int64_t nsel = -1;
    thrust::counting_iterator<int64_t> iota(start);
    two_phase(
        [&](void* t, size_t& bytes) {
          return cub::DeviceSelect::Flagged(t, bytes, iota, static_cast<const uint8_t*>(flags.data()), out.data(),
                                            &nsel, static_cast<int64_t>(n), cudaStream_t{});
        },
        [&] { return nsel == -1 && std::count(out.begin(), out.end(), -1) == static_cast<long>(n); });
    CHECK(nsel == static_cast<int64_t>(want.size()));
    CHECK(std::equal(want.begin(), want.end(), out.begin()));
  }
  size_t bytes = 0;
  int64_t nsel = 0;
  int64_t out = 0;
  CHECK(cub::DeviceSelect::Flagged(nullptr, bytes, thrust::counting_iterator<int64_t>(0),
                                   static_cast<const uint8_t*>(nullptr), &out, &nsel, -3) == cudaErrorInvalidValue);
}

struct Widen {  // like metrics' WeightOf: uint32 -> u128 with bits in both halves
  u128 operator()(uint32_t x) const { return (static_cast<u128>(x) << 64) | (static_cast<u128>(x) * 3u); }
};
struct AddU128 {
  u128 operator()(const u128& a, const u128& b) const { return a + b; }
};

// Keys with runs; when `sorted` is false equal keys also recur in separate runs.
std::vector<uint64_t> run_keys(size_t n, bool sorted) {
  std::vector<uint64_t> k(n);
  for (auto& x : k) x = rng() % 40;
  if (sorted) std::sort(k.begin(), k.end());
  return k;
}

// Reference runs via std::adjacent_find: [begin, end) of each maximal run of equal keys.
std::vector<std::pair<size_t, size_t>> reference_runs(const std::vector<uint64_t>& k) {
  std::vector<std::pair<size_t, size_t>> runs;
  auto it = k.begin();
  while (it != k.end()) {
    auto end = std::adjacent_find(it, k.end(), [](uint64_t a, uint64_t b) { return a != b; });
    if (end != k.end()) ++end;
    runs.emplace_back(it - k.begin(), end - k.begin());
    it = end;
  }
  return runs;
}

void test_reduce_and_encode() {
  for (size_t n : {size_t{0}, size_t{1}, size_t{2}, size_t{300}, size_t{10000}}) {
    for (bool sorted : {true, false}) {
      const std::vector<uint64_t> keys = run_keys(n, sorted);
      std::vector<uint32_t> vals(n);
      for (auto& v : vals) v = static_cast<uint32_t>(rng());
      const auto runs = reference_runs(keys);

      auto weights = thrust::make_transform_iterator(static_cast<const uint32_t*>(vals.data()), Widen{});
      std::vector<uint64_t> uniq(n, 99);
      std::vector<u128> sums(n, 99);
      int64_t nruns[2] = {-1, -1};
      two_phase(
          [&](void* t, size_t& bytes) {
            return cub::DeviceReduce::ReduceByKey(t, bytes, static_cast<const uint64_t*>(keys.data()), uniq.data(),
                                                  weights, sums.data(), nruns, AddU128{}, static_cast<int64_t>(n),
                                                  cudaStream_t{});
          },
          [&] { return nruns[0] == -1 && std::count(uniq.begin(), uniq.end(), 99u) == static_cast<long>(n); });
      CHECK(nruns[0] == static_cast<int64_t>(runs.size()));
      bool ok = true;
      for (size_t r = 0; r < runs.size(); ++r) {
        const u128 want = std::accumulate(vals.begin() + runs[r].first, vals.begin() + runs[r].second, u128{0},
                                          [](u128 a, uint32_t v) { return a + Widen{}(v); });
        ok = ok && uniq[r] == keys[runs[r].first] && sums[r] == want;
      }
      CHECK(ok);

      std::vector<uint64_t> uniq2(n, 99);
      std::vector<int64_t> lens(n, -1);
      two_phase(
          [&](void* t, size_t& bytes) {
            return cub::DeviceRunLengthEncode::Encode(t, bytes, keys.data(), uniq2.data(), lens.data(), nruns + 1,
                                                      n, cudaStream_t{});
          },
          [&] { return nruns[1] == -1 && std::count(lens.begin(), lens.end(), -1) == static_cast<long>(n); });
      CHECK(nruns[1] == static_cast<int64_t>(runs.size()));
      std::vector<uint64_t> want_uniq;
      std::unique_copy(keys.begin(), keys.end(), std::back_inserter(want_uniq));
      CHECK(std::equal(want_uniq.begin(), want_uniq.end(), uniq2.begin()));
      ok = true;
      for (size_t r = 0; r < runs.size(); ++r)
        ok = ok && lens[r] == static_cast<int64_t>(runs[r].second - runs[r].first);
      CHECK(ok);
    }
  }
}

void test_iterators() {
  thrust::counting_iterator<int64_t> c(10);
  CHECK(*c == 10 && c[5] == 15 && *(c + 3) == 13 && *(3 + c) == 13 && (c + 7) - c == 7);
  auto c2 = c;
  ++c2;
  c2 += 4;
  CHECK(*c2 == 15 && c2 > c && c2 != c && *(c2 - 5) == 10);
  static_assert(std::is_same<std::iterator_traits<thrust::counting_iterator<int64_t>>::value_type, int64_t>::value,
                "counting value_type");

  const uint32_t data[4] = {1, 2, 3, 4};
  auto t = thrust::make_transform_iterator(data, Widen{});
  static_assert(std::is_same<decltype(t)::value_type, u128>::value, "value_type is the functor's result");
  static_assert(std::is_same<std::iterator_traits<decltype(t)>::iterator_category,
                             std::random_access_iterator_tag>::value, "random access");
  CHECK(*t == Widen{}(1) && t[3] == Widen{}(4) && *(t + 2) == Widen{}(3) && (t + 4) - t == 4);
  auto t2 = t;
  t2++;
  CHECK(*t2 == Widen{}(2) && t2.base() == data + 1 && t < t2);
}

// SortKeys (pointer and DoubleBuffer forms) against std::stable_sort on bits [b, e).
template <typename K>
void test_sort_keys() {
  for (size_t n : {size_t{0}, size_t{1}, size_t{257}, size_t{5000}}) {
    for (int bits : {int(8 * sizeof(K)), 12}) {
      std::vector<K> in(n);
      for (auto& k : in) k = random_key<K>(n > 300 ? 50 : 0);
      const uint64_t mask = bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1;
      std::vector<K> want = in;
      std::stable_sort(want.begin(), want.end(),
                       [&](K a, K b) { return (static_cast<uint64_t>(a) & mask) < (static_cast<uint64_t>(b) & mask); });
      std::vector<K> out(n, K(7));
      two_phase([&](void* t, size_t& bytes) { return cub::DeviceRadixSort::SortKeys(t, bytes, in.data(), out.data(), n, 0, bits); },
                [&] { return std::count(out.begin(), out.end(), K(7)) == static_cast<long>(n); });
      CHECK(out == want);
      std::vector<K> cur = in, alt(n, K(9));
      cub::DoubleBuffer<K> db(cur.data(), alt.data());
      size_t bytes = 0;
      CHECK(cub::DeviceRadixSort::SortKeys(nullptr, bytes, db, n, 0, bits) == cudaSuccess && db.selector == 0);
      std::vector<unsigned char> temp(bytes);
      CHECK(cub::DeviceRadixSort::SortKeys(temp.data(), bytes, db, n, 0, bits) == cudaSuccess);
      CHECK(db.selector == 1 && db.Current() == alt.data());
      CHECK(std::equal(want.begin(), want.end(), db.Current()));
    }
  }
}

struct IsOdd {  // like metrics' HeadFlag: index -> 0/1 flag
  const uint64_t* v;
  uint32_t operator()(int64_t i) const { return static_cast<uint32_t>(v[i] & 1); }
};

void test_scan() {
  for (size_t n : {size_t{0}, size_t{1}, size_t{100}, size_t{10000}}) {
    std::vector<uint64_t> v(n);
    for (auto& x : v) x = rng();
    std::vector<uint64_t> want(n);
    std::partial_sum(v.begin(), v.end(), want.begin());
    std::vector<uint64_t> out(n, 1);
    two_phase([&](void* t, size_t& bytes) { return cub::DeviceScan::InclusiveSum(t, bytes, v.data(), out.data(), n); },
              [&] { return std::count(out.begin(), out.end(), 1u) == static_cast<long>(n); });
    CHECK(out == want);
    // A transform iterator over indices as input, 32-bit sums (run numbers of the metrics).
    auto flags = thrust::make_transform_iterator(thrust::counting_iterator<int64_t>(0), IsOdd{v.data()});
    std::vector<uint32_t> runs(n, 0), want_runs(n);
    uint32_t acc = 0;
    for (size_t i = 0; i < n; ++i) want_runs[i] = acc += static_cast<uint32_t>(v[i] & 1);
    size_t bytes = 0;
    CHECK(cub::DeviceScan::InclusiveSum(nullptr, bytes, flags, runs.data(), static_cast<int64_t>(n)) == cudaSuccess);
    std::vector<unsigned char> temp(bytes);
    CHECK(cub::DeviceScan::InclusiveSum(temp.data(), bytes, flags, runs.data(), static_cast<int64_t>(n)) == cudaSuccess);
    CHECK(runs == want_runs);
  }
  size_t bytes = 0;
  uint64_t x = 0;
  CHECK(cub::DeviceScan::InclusiveSum(nullptr, bytes, &x, &x, -1) == cudaErrorInvalidValue);
}

}  // namespace

int main() {
  test_iterators();
  test_sort<uint32_t, uint32_t>();
  test_sort<uint32_t, int64_t>();
  test_sort<uint64_t, uint32_t>();
  test_sort<unsigned long long, int64_t>();
  test_sort_errors();
  test_select();
  test_reduce_and_encode();
  test_sort_keys<uint32_t>();
  test_sort_keys<uint64_t>();
  test_scan();
  if (g_failures) {
    std::printf("test_cub_shims: %d check(s) failed\n", g_failures);
    return 1;
  }
  std::printf("test_cub_shims: all checks passed\n");
  return 0;
}
