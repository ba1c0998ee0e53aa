// Data-parallel training's collectives on PyTorch's own distributed engine (c10d): a
// TCPStore rendezvous, then ProcessGroupGloo (CPU tensors) or ProcessGroupNCCL (CUDA tensors,
// dist_nccl.cpp), and the few collectives the trainer needs: the mean of tensors over the
// ranks (gradients in flat buckets, as DistributedDataParallel reduces them), a broadcast from
// one rank and a barrier.
//
// The C API below never lets a C++ exception out: every function returns 0 on success, or -1
// with *err set to a malloc'd one-line message (free it with stz_dist_free_error).
#include "dist_backend.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

struct StzGroup {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  int world;
};

namespace {

// A message on one line: c10's errors without their C++ backtrace, newlines as "; ".
std::string one_line(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  std::string out;
  for (char c : text) {
    if (c == '\n') {
      out += "; ";
    } else {
      out += c;
    }
  }
  return out;
}

int fail(char** err, const std::string& message) {
  if (err != nullptr) *err = strdup(one_line(message).c_str());
  return -1;
}

// Runs `body`, turning any exception into the error string.
int guarded(char** err, const std::function<void()>& body) {
  try {
    body();
    return 0;
  } catch (const c10::Error& e) {
    return fail(err, e.what_without_backtrace());
  } catch (const std::exception& e) {
    return fail(err, e.what());
  } catch (...) {
    return fail(err, "unknown C++ exception");
  }
}

bool is_loopback(const std::string& addr) {
  return addr == "127.0.0.1" || addr == "localhost" || addr == "::1";
}

c10::intrusive_ptr<c10d::Backend> make_gloo(const c10::intrusive_ptr<c10d::Store>& store,
                                           int rank, int world, const std::string& addr,
                                           std::chrono::milliseconds timeout) {
  auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
  // As torch.distributed: GLOO_SOCKET_IFNAME names the interface; a loopback master means a
  // single machine; otherwise the interface this host's name resolves to.
  const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
  if (ifname != nullptr && *ifname != '\0') {
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  } else if (is_loopback(addr)) {
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  } else {
    opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, opts);
}

std::vector<at::Tensor> tensors_of(void** ptrs, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(*static_cast<at::Tensor*>(ptrs[i]));
  return out;
}

// Calls `reduce` on flat buckets of at most `bucket_bytes` (one tensor may exceed it), each of
// one device and dtype, and copies the results back into the tensors.
void bucketed(std::vector<at::Tensor>& tensors, int64_t bucket_bytes,
              const std::function<void(at::Tensor&)>& reduce) {
  // The tensors may be parameters (a broadcast): their copies are not part of any graph.
  at::NoGradGuard no_grad;
  size_t i = 0;
  while (i < tensors.size()) {
    size_t j = i;
    int64_t bytes = 0;
    while (j < tensors.size() && tensors[j].device() == tensors[i].device() &&
           tensors[j].scalar_type() == tensors[i].scalar_type() &&
           (j == i || bytes + static_cast<int64_t>(tensors[j].nbytes()) <= bucket_bytes)) {
      bytes += static_cast<int64_t>(tensors[j].nbytes());
      ++j;
    }
    std::vector<at::Tensor> flat_parts;
    for (size_t k = i; k < j; ++k) flat_parts.push_back(tensors[k].reshape({-1}));
    at::Tensor flat = at::cat(flat_parts);
    reduce(flat);
    int64_t offset = 0;
    for (size_t k = i; k < j; ++k) {
      int64_t n = tensors[k].numel();
      tensors[k].copy_(flat.narrow(0, offset, n).view(tensors[k].sizes()));
      offset += n;
    }
    i = j;
  }
}

void mean_in_place(StzGroup* g, std::vector<at::Tensor>& tensors, int64_t bucket_bytes) {
  bucketed(tensors, bucket_bytes, [g](at::Tensor& flat) {
    std::vector<at::Tensor> one{flat};
    g->backend->allreduce(one)->wait();
    flat.div_(g->world);
  });
}

}  // namespace

extern "C" {

StzGroup* stz_dist_create(int rank, int world, const char* addr, int port, int64_t timeout_ms,
                          int cuda, char** err) {
  StzGroup* group = nullptr;
  guarded(err, [&] {
    std::chrono::milliseconds timeout(timeout_ms);
    c10d::TCPStoreOptions o;
    o.port = static_cast<uint16_t>(port);
    o.isServer = rank == 0;
    o.numWorkers = world;
    o.waitWorkers = true;
    o.timeout = timeout;
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(addr), o);
    auto backend = cuda != 0 ? stz_make_nccl(store, rank, world, timeout)
                             : make_gloo(store, rank, world, addr, timeout);
    group = new StzGroup{store, backend, world};
  });
  return group;
}

int stz_dist_all_reduce_mean(StzGroup* g, void** tensors, size_t n, int64_t bucket_bytes,
                             char** err) {
  return guarded(err, [&] {
    auto ts = tensors_of(tensors, n);
    mean_in_place(g, ts, bucket_bytes);
  });
}

// The mean over the ranks of the gradients of `params`; a parameter without a gradient on
// this rank takes part with zeros (so that every rank reduces the same buckets).
int stz_dist_all_reduce_grads(StzGroup* g, void** params, size_t n, int64_t bucket_bytes,
                              char** err) {
  return guarded(err, [&] {
    std::vector<at::Tensor> grads;
    for (auto& p : tensors_of(params, n)) {
      if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
      grads.push_back(p.grad());
    }
    mean_in_place(g, grads, bucket_bytes);
  });
}

int stz_dist_broadcast(StzGroup* g, void** tensors, size_t n, int root, int64_t bucket_bytes,
                       char** err) {
  return guarded(err, [&] {
    auto ts = tensors_of(tensors, n);
    bucketed(ts, bucket_bytes, [g, root](at::Tensor& flat) {
      std::vector<at::Tensor> one{flat};
      c10d::BroadcastOptions o;
      o.rootRank = root;
      g->backend->broadcast(one, o)->wait();
    });
  });
}

int stz_dist_barrier(StzGroup* g, char** err) {
  return guarded(err, [&] { g->backend->barrier()->wait(); });
}

int stz_dist_nccl_available() { return stz_nccl_compiled() ? 1 : 0; }

void stz_dist_destroy(StzGroup* g) {
  try {
    delete g;
  } catch (...) {
  }
}

void stz_dist_free_error(char* err) { std::free(err); }

}  // extern "C"
