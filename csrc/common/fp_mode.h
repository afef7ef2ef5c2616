// The CPU kernels compute in the IEEE floating-point mode, denormals included, whatever mode the
// calling thread is in. torch.set_flush_denormal(True) (and torch.compile's CPU code on torch
// 2.4) turn on flush-to-zero and denormals-are-zero for the thread that calls it, while the
// OpenMP workers keep the mode they started with: squared distances below ~1e-38 (float32) then
// compared as 0 on some threads and not on others, so kNN orders, normals and everything after
// them depended on the caller's mode and on which thread took which rows (coordinates of ~1e-19:
// 7 of 8 kNN distances differed). Every binding entry and every parallel task runs under this
// guard, which restores the caller's mode when it ends. The CUDA kernels keep denormals too
// (nvcc's default -ftz=false), so both devices agree.
#pragma once

namespace m3ad {

class IeeeFpMode {
 public:
  IeeeFpMode();
  ~IeeeFpMode();
  IeeeFpMode(const IeeeFpMode&) = delete;
  IeeeFpMode& operator=(const IeeeFpMode&) = delete;

 private:
  unsigned long long saved_ = 0;
};

}  // namespace m3ad
