// The block-select CUDA kNN (knn_select_cuda.cu), launched from knn_cuda.cu's dispatch.
#pragma once
#include <cuda_runtime.h>

#include "knn/knn.h"

namespace m3ad {

// kDim 3 or 0 (runtime D), T float or double; requires knn_block_select_fits(p.P2, p.K).
template <typename T, int kDim>
void knn_block_select(const KnnParams& p, cudaStream_t stream);

}  // namespace m3ad
