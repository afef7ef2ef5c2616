// The spatial order of a batch of 3-D clouds on the CPU (ops/_spatial.py's spatial_order): each
// cloud's valid points in Morton order of their codes (tiles_plan.h's morton_code, in the frame
// of the cloud's bounding cube), equal codes in index order, then its padding in index order.
// torch's frame reductions and stable argsort took ~10 ms for 100k points on 2 cores, a seventh
// of FPFH's whole neighbour search; here one pass for the frame, one for the codes and three
// 10-bit counting-sort passes, ~1 ms. (The CUDA adapters keep torch's GPU sort; the two orders
// may differ at NaN coordinates, and the order never shows in any result.)
#pragma once
#include <cstdint>

#include "common/dtype.h"

namespace m3ad {

// points (B, P, 3); lengths (B,) or null (all P valid); order (B, P) output.
void morton_order_cpu(const void* points, const int64_t* lengths, int64_t B, int64_t P, DType dtype,
                      int64_t* order);

}  // namespace m3ad
