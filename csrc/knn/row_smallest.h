// The m smallest values of each row of a dense (rows, n) block, with their column indices.
//
// The CPU candidate step of the feature-space kNN filter (mentor3ad_ext/ops/_knn_dense.py): after
// the matrix product, each query's row of approximate distances is reduced to its m smallest.
// torch.topk took ~0.6 ns per element there, more than the product itself at D = 16; here most
// elements are rejected by one comparison with the current m-th value, 16 at a time.
#pragma once
#include <cstdint>

#include "common/dtype.h"

namespace m3ad {

// a: rows x n, row-major; vals (rows, m) ascending with idx (rows, m) their columns. Order: by
// value, NaN after every number (as torch.sort), ties by the lower column. Requires 1 <= m <= n.
void row_smallest(const void* a, int64_t rows, int64_t n, int64_t m, DType dtype, void* vals, int64_t* idx);

}  // namespace m3ad
