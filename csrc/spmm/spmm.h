// Sparse x dense products that carry every "weighted gather" in the library (IDW interpolation,
// interpolation + pooling onto a pixel grid) and their gradients, deterministically.
//
//   ell_spmm:  out[b, r, :] = sum_j  w[b, r, j] * x[b, idx[b, r, j], :]      (idx -1: skipped)
//   csr_spmm:  out[b, g, :] = sum_{e in row g of the CSR}  w_e * y[b, e / K, :]
//              (the transpose of ell_spmm: its rows are built by a stable sort of idx, so every
//               row sums its entries in entry order and the result does not depend on timing)
//   ell_dot:   out[b, r, j] = dot(g[b, r, :], x[b, idx[b, r, j], :])          (gradient of w)
//
// Sums run in the stated order in the input precision on both devices, so ell_spmm and csr_spmm
// agree bit for bit between CPU and CUDA.
#pragma once
#include <cstdint>

#include "common/dtype.h"
#include "common/launch.h"

namespace m3ad {

struct EllParams {
  const void* x = nullptr;        // (B, N, C)
  const int64_t* idx = nullptr;   // (B, R, K), -1 or [0, N)
  const void* w = nullptr;        // (B, R, K)
  const void* g = nullptr;        // ell_dot only: (B, R, C)
  void* out = nullptr;            // ell_spmm: (B, R, C); ell_dot: (B, R, K)
  int64_t B = 0, N = 0, R = 0, K = 0, C = 0;
  DType dtype = DType::kFloat32;
};

struct CsrParams {
  const void* y = nullptr;          // (B, R, C): the rows that entries point back to (entry e -> row e / K)
  const int64_t* offsets = nullptr;  // (B, G + 1) into `entries`, per batch
  const int64_t* entries = nullptr;  // (B, R * K) flat entry ids grouped by target row, stable
  const void* w = nullptr;           // (B, R * K) entry weights
  void* out = nullptr;               // (B, G, C)
  int64_t B = 0, G = 0, R = 0, K = 0, C = 0;
  DType dtype = DType::kFloat32;
};

void ell_spmm_cpu(const EllParams& p);
void ell_dot_cpu(const EllParams& p);
void csr_spmm_cpu(const CsrParams& p);
void ell_spmm_cuda(const EllParams& p, const Device& dev);
void ell_dot_cuda(const EllParams& p, const Device& dev);
void csr_spmm_cuda(const CsrParams& p, const Device& dev);

}  // namespace m3ad
