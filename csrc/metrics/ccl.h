// 8-connected component labelling of binary masks (the structure np.ones((3, 3)) that the official
// MVTec AD / MVTec 3D-AD evaluation passes to scipy.ndimage.label).
#pragma once
#include <cstdint>
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
// allocation. On return (asynchronously): labels[i] is, for a defect pixel, the in-map index of
// its component's root (the component's first pixel in raster order) and -1 for a normal pixel;
// sizes[map * H * W + root] is the component size (other entries 0); *n_regions is incremented
// by the number of components. All three outputs must be zeroed/sized by the caller: labels and
// sizes hold N * H * W entries; sizes and *n_regions must be zero.
void label_maps_cuda(const uint8_t* masks, int64_t N, int64_t H, int64_t W, int32_t* labels, uint32_t* sizes,
                     unsigned long long* n_regions, void* stream);

}  // namespace metrics
}  // namespace m3ad
