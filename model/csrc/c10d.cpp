// libtorch's own torch.distributed (c10d) for tiller's data parallelism: a TCPStore for
// rendezvous and ProcessGroupGloo (CPU) or ProcessGroupNCCL (CUDA, compiled only with
// -DTILLER_NCCL, see model/build.rs) for the collectives. tch does not bind c10d, so
// this file exposes the handful of operations model/src/dist/group.rs needs.
//
// Every entry point catches C++ exceptions and returns a strdup'd message (null on
// success) that the caller frees with free(): a peer that dies or a timeout becomes a
// Rust error, never an abort. A tch `Tensor` is an `at::Tensor*`.

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef TILLER_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// A rank's group, and its heartbeat: a thread that adds 1 to `tiller/alive/<rank>` in
// the store every `kHeartbeat` on its own connection, so that after a failed collective
// the survivors can tell a rank that is gone (its count stops) from one that hangs.
constexpr std::chrono::milliseconds kHeartbeat{500};

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  int rank;
  int world_size;
  std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;
  std::thread heartbeat;

  void start_heartbeat() {
    auto connection = store->clone();
    std::string key = "tiller/alive/" + std::to_string(rank);
    heartbeat = std::thread([this, connection, key] {
      std::unique_lock<std::mutex> lock(mutex);
      while (!stopping) {
        try {
          connection->add(key, 1);
        } catch (...) {
          return;  // the store is gone: nothing left to report to
        }
        wake.wait_for(lock, kHeartbeat, [this] { return stopping; });
      }
    });
  }

  ~Group() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stopping = true;
    }
    wake.notify_all();
    if (heartbeat.joinable()) heartbeat.join();
  }
};

char *message(const char *what) { return strdup(what); }

// An entry point's body, run so that it returns null on success and the message of any
// exception it throws otherwise (see the top of this file).
template <class F>
char *guarded(F &&body) {
  try {
    body();
    return nullptr;
  } catch (const c10::Error &e) {
    return message(e.what_without_backtrace());
  } catch (const std::exception &e) {
    return message(e.what());
  }
}

std::vector<at::Tensor> gather(at::Tensor **tensors, int64_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int64_t i = 0; i < n; ++i) out.push_back(*tensors[i]);
  return out;
}

// Splits `tensors` into runs of one dtype and device of at most `bucket_bytes` each (a
// tensor larger than a bucket is a bucket of its own), as DDP's reducer does: one
// collective per bucket instead of one per parameter.
std::vector<std::vector<at::Tensor>> buckets(const std::vector<at::Tensor> &tensors,
                                             int64_t bucket_bytes) {
  std::vector<std::vector<at::Tensor>> out;
  int64_t bytes = 0;
  for (const auto &t : tensors) {
    int64_t size = t.numel() * static_cast<int64_t>(t.element_size());
    bool fits = !out.empty() && bytes + size <= bucket_bytes &&
                out.back().front().scalar_type() == t.scalar_type() &&
                out.back().front().device() == t.device();
    if (!fits) {
      out.emplace_back();
      bytes = 0;
    }
    out.back().push_back(t);
    bytes += size;
  }
  return out;
}

// Runs `op` on one flat buffer per bucket and copies the result back into the tensors.
template <typename Op>
void bucketed(at::Tensor **tensors, int64_t n, int64_t bucket_bytes, Op op) {
  at::NoGradGuard no_grad;
  for (auto &bucket : buckets(gather(tensors, n), bucket_bytes)) {
    std::vector<at::Tensor> flat;
    flat.reserve(bucket.size());
    for (const auto &t : bucket) flat.push_back(t.reshape({-1}));
    std::vector<at::Tensor> buffer{at::cat(flat)};
    op(buffer);
    int64_t offset = 0;
    for (auto &t : bucket) {
      int64_t numel = t.numel();
      t.copy_(buffer[0].narrow(0, offset, numel).view(t.sizes()));
      offset += numel;
    }
  }
}

// The network device Gloo binds on this host, as torch.distributed picks it: the
// interface GLOO_SOCKET_IFNAME names; loopback when the job is all on this machine
// (MASTER_ADDR is a loopback address); else the address this host's name resolves to.
std::shared_ptr<::gloo::transport::Device> gloo_device(const std::string &master) {
  if (const char *ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
    return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  }
  if (master == "localhost" || master.rfind("127.", 0) == 0 || master == "::1") {
    return c10d::ProcessGroupGloo::createDeviceForHostname(master);
  }
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

}  // namespace

extern "C" {

// Joins the group of `world_size` processes whose TCPStore rank 0 serves at
// `host:port`. `init_timeout_ms` bounds the rendezvous (every rank connecting),
// `timeout_ms` each later collective. `cuda_device` < 0 selects Gloo on CPU, else NCCL
// on that CUDA device.
char *tiller_c10d_init(const char *host, int port, int rank, int world_size,
                       int64_t init_timeout_ms, int64_t timeout_ms, int cuda_device,
                       void **out) {
  return guarded([&] {
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(port);
    options.isServer = rank == 0;
    options.numWorkers = world_size;
    options.waitWorkers = true;
    options.timeout = std::chrono::milliseconds(init_timeout_ms);
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), options);
    c10::intrusive_ptr<c10d::Backend> backend;
    if (cuda_device < 0) {
      auto gloo = c10d::ProcessGroupGloo::Options::create(std::chrono::milliseconds(timeout_ms));
      gloo->devices.push_back(gloo_device(host));
      backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, gloo);
    } else {
#ifdef TILLER_NCCL
      auto nccl = c10d::ProcessGroupNCCL::Options::create();
      nccl->timeout = std::chrono::milliseconds(timeout_ms);
      backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size, nccl);
      backend->setBoundDeviceId(c10::Device(c10::DeviceType::CUDA, cuda_device));
#else
      throw std::runtime_error(
          "this tiller was built without NCCL (no nccl.h when model/build.rs ran); run "
          "scripts/setup.sh --cuda and rebuild for data parallelism on CUDA");
#endif
    }
    // Later store operations (the collective counters, the config check) are quick.
    store->setTimeout(std::chrono::milliseconds(timeout_ms));
    auto *group = new Group();
    group->store = store;
    group->backend = backend;
    group->rank = rank;
    group->world_size = world_size;
    group->start_heartbeat();
    *out = group;
  });
}

// Sums (average = 0) or averages (average = 1) `n` tensors in place across ranks, in
// flat buckets of at most `bucket_bytes`.
char *tiller_c10d_all_reduce(void *group, at::Tensor **tensors, int64_t n, int average,
                             int64_t bucket_bytes) {
  return guarded([&] {
    auto *g = static_cast<Group *>(group);
    bucketed(tensors, n, bucket_bytes, [&](std::vector<at::Tensor> &buffer) {
      // Gloo has no AVG reduction: sum, then divide.
      g->backend->allreduce(buffer, c10d::AllreduceOptions{})->wait();
      if (average) buffer[0].div_(g->world_size);
    });
  });
}

// Copies rank `root`'s tensors into every rank's.
char *tiller_c10d_broadcast(void *group, at::Tensor **tensors, int64_t n, int root,
                            int64_t bucket_bytes) {
  return guarded([&] {
    auto *g = static_cast<Group *>(group);
    bucketed(tensors, n, bucket_bytes, [&](std::vector<at::Tensor> &buffer) {
      c10d::BroadcastOptions options;
      options.rootRank = root;
      g->backend->broadcast(buffer, options)->wait();
    });
  });
}

// ZeRO-1's two collectives, on one flat tensor each (c10d's reduce_scatter_tensor and
// all_gather_into_tensor). Reduce-scatter: `input` holds world_size equal chunks and
// rank r's `output` gets the sum over ranks of their r-th chunk. All-gather: every
// rank's `input`, in rank order, into each rank's `output` (world_size times as long).
char *tiller_c10d_reduce_scatter(void *group, at::Tensor *output, at::Tensor *input) {
  return guarded([&] {
    at::NoGradGuard no_grad;
    static_cast<Group *>(group)
        ->backend->_reduce_scatter_base(*output, *input, c10d::ReduceScatterOptions{})
        ->wait();
  });
}

char *tiller_c10d_all_gather(void *group, at::Tensor *output, at::Tensor *input) {
  return guarded([&] {
    at::NoGradGuard no_grad;
    static_cast<Group *>(group)
        ->backend->_allgather_base(*output, *input, c10d::AllgatherOptions{})
        ->wait();
  });
}

char *tiller_c10d_barrier(void *group) {
  return guarded([&] {
    static_cast<Group *>(group)->backend->barrier()->wait();
  });
}

// Sets a key in the job's TCPStore (rank bookkeeping, the config check).
char *tiller_c10d_store_set(void *group, const char *key, const uint8_t *value, int64_t len) {
  return guarded([&] {
    std::vector<uint8_t> bytes(value, value + len);
    static_cast<Group *>(group)->store->set(std::string(key), bytes);
  });
}

// Reads a key, waiting up to `timeout_ms` for it to be set; the value is malloc'd into
// `*value` (freed by the caller with free()).
char *tiller_c10d_store_get(void *group, const char *key, int64_t timeout_ms, uint8_t **value,
                            int64_t *len) {
  return guarded([&] {
    auto *g = static_cast<Group *>(group);
    std::string k(key);
    g->store->wait({k}, std::chrono::milliseconds(timeout_ms));
    auto bytes = g->store->get(k);
    *len = static_cast<int64_t>(bytes.size());
    *value = static_cast<uint8_t *>(malloc(bytes.size() + 1));
    if (!bytes.empty()) std::memcpy(*value, bytes.data(), bytes.size());
  });
}

void tiller_c10d_destroy(void *group) {
  try {
    delete static_cast<Group *>(group);
  } catch (...) {
    // Tearing down after a failed peer may throw; the process is leaving anyway.
  }
}

}  // extern "C"
