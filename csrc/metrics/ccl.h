// 8-connected component labelling of binary masks (the structure np.ones((3, 3)) that the official
// MVTec AD / MVTec 3D-AD evaluation passes to scipy.ndimage.label).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

namespace m3ad {
namespace metrics {

// Reusable per-thread buffers of the CPU labeller.
struct CclScratch {
  std::vector<int32_t> label;   // provisional label per pixel (only defect pixels are written)
  std::vector<int32_t> parent;  // union-find forest over provisional labels
  std::vector<int32_t> comp;    // provisional label -> final component id
  std::vector<int32_t> pixels;  // in-map indices of the defect pixels, raster order
};

// Labels one H x W mask (nonzero = defect). On return `pixels` lists the defect pixels in raster
// order, `region_of[k]` is the component (0-based, numbered in raster order of first pixel, as
// scipy does) of pixels[k], and `sizes` holds the pixel count per component.
void label_map_cpu(const uint8_t* mask, int64_t H, int64_t W, CclScratch& s,
                   std::vector<int32_t>& region_of, std::vector<uint32_t>& sizes);

}  // namespace metrics
}  // namespace m3ad

namespace m3ad {
namespace metrics {

// CUDA labelling of N masks of H x W (nonzero = defect) on `stream` (a cudaStream_t), without
// allocation or host synchronisation. Only the entries of defect pixels in `labels` and `sizes`
// (N * H * W entries each) are written or read, so neither needs initialising. On return
// (asynchronously): labels[i] of a defect pixel is the in-map index of its component's root (the
// component's first pixel in raster order), sizes[map * H * W + root] is the component size, and
// *n_regions has grown by the number of components. `mark`, if set, is called after each kernel
// launch with the phase's name (the profile of metrics_cuda.cu records events there).
void label_maps_cuda(const uint8_t* masks, int64_t N, int64_t H, int64_t W, int32_t* labels, uint32_t* sizes,
                     unsigned long long* n_regions, void* stream,
                     const std::function<void(const char*)>& mark = nullptr);

}  // namespace metrics
}  // namespace m3ad
