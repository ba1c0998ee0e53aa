// ProcessGroupNCCL for csrc/dist.cpp (CUDA tensors). Compiled with NCCL only when build.rs
// found nccl.h and the CUDA runtime headers (STUDIOIZE_NCCL with USE_C10D_NCCL); otherwise
// asking for it is an error naming the reason.
#include "dist_backend.h"

#include <stdexcept>

#ifdef STUDIOIZE_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

c10::intrusive_ptr<c10d::Backend> stz_make_nccl(const c10::intrusive_ptr<c10d::Store>& store,
                                               int rank, int world,
                                               std::chrono::milliseconds timeout) {
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  opts->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, opts);
}

bool stz_nccl_compiled() { return true; }
#else
c10::intrusive_ptr<c10d::Backend> stz_make_nccl(const c10::intrusive_ptr<c10d::Store>&, int,
                                               int, std::chrono::milliseconds) {
  throw std::runtime_error(
      "this studioize was built without NCCL (build.rs found no nccl.h / CUDA headers), so it "
      "cannot train on CUDA devices with more than one process");
}

bool stz_nccl_compiled() { return false; }
#endif
