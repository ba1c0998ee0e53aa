// The CUDA backend of csrc/dist.cpp, defined in dist_nccl.cpp: ProcessGroupNCCL when this
// build found NCCL's and CUDA's headers (STUDIOIZE_NCCL), else a clear error.
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>

c10::intrusive_ptr<c10d::Backend> stz_make_nccl(const c10::intrusive_ptr<c10d::Store>& store,
                                               int rank, int world,
                                               std::chrono::milliseconds timeout);

bool stz_nccl_compiled();
