// Evolved masking's clustering (medic/cluster.h) for JavaScript: clusterParts runs on the calling
// thread; clusterPartsAsync runs the same work on a libuv worker and returns a Promise, so the
// training loop can cluster the next batch's maps while the engine runs this batch's step (on a GPU
// the two do not compete; on the CPU they share the cores). Both validate every argument here, named.
#include <algorithm>
#include <cmath>
#include <thread>
#include <vector>

#include "handles.h"
#include "medic/cluster.h"

namespace medic::napi {
namespace {

// One call's work, parsed from (method, maps, B, N, gridW, K, opts, init). The pointers are into the
// caller's typed arrays: the async path keeps them alive with references until the worker is done.
struct ClusterJob {
  bool em = false;
  const float* maps = nullptr;
  int64_t B = 0, N = 0, grid_w = 0, kmax = 0, rounds = 15;
  const int32_t* K = nullptr;
  double kappa = 40, lambda = 0;
  int threads = 1;
  const float* init = nullptr;

  // labels [B, N]: one image per task over `threads` host threads.
  void run(int32_t* labels) const {
    auto one = [&](int64_t b) {
      const float* a = maps + b * N * N;
      if (em)
        cluster_em(a, N, K[b], init + b * kmax * N, rounds, kappa, labels + b * N);
      else
        cluster_hc(a, N, K[b], grid_w, lambda, labels + b * N);
    };
    const int64_t nt = std::min<int64_t>(threads, B);
    if (nt <= 1) {
      for (int64_t b = 0; b < B; ++b) one(b);
      return;
    }
    std::vector<std::thread> pool;
    for (int64_t t = 0; t < nt; ++t)
      pool.emplace_back([&, t] {
        for (int64_t b = t; b < B; b += nt) one(b);
      });
    for (auto& th : pool) th.join();
  }
};

ClusterJob parse_job(const Napi::CallbackInfo& info, const std::string& what) {
  Napi::Env env = info.Env();
  auto num = [&](int i, const char* name) -> int64_t {
    if (!info[i].IsNumber()) throw Error(what + ": " + name + " must be a number");
    const double d = info[i].As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || std::floor(d) != d)
      throw Error(what + ": " + name + " must be a non-negative integer, got " + std::to_string(d));
    return static_cast<int64_t>(d);
  };
  ClusterJob j;
  const std::string method = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  if (method != "em" && method != "hc") throw Error(what + ": method must be 'em' or 'hc', got '" + method + "'");
  j.em = method == "em";
  j.B = num(2, "B");
  j.N = num(3, "N");
  j.grid_w = num(4, "gridW");
  if (j.N < 1 || j.grid_w < 1 || j.N % j.grid_w)
    throw Error(what + ": N = " + std::to_string(j.N) + " is not a grid of width " + std::to_string(j.grid_w));
  j.maps = static_cast<const float*>(
      typed_array_bytes(info[1], DType::F32, j.B * j.N * j.N, what + (j.em ? " attn" : " gram")));
  j.K = static_cast<const int32_t*>(typed_array_bytes(info[5], DType::I32, j.B, what + " K"));
  for (int64_t b = 0; b < j.B; ++b) {
    if (j.K[b] < 1 || j.K[b] > j.N)
      throw Error(what + ": K[" + std::to_string(b) + "] must be in [1, N=" + std::to_string(j.N) + "], got " +
                  std::to_string(j.K[b]));
    j.kmax = std::max<int64_t>(j.kmax, j.K[b]);
  }
  Napi::Object o = info[6].IsObject() ? info[6].As<Napi::Object>() : Napi::Object::New(env);
  auto opt = [&](const char* k, double d) {
    return o.Has(k) && o.Get(k).IsNumber() ? o.Get(k).As<Napi::Number>().DoubleValue() : d;
  };
  j.rounds = static_cast<int64_t>(opt("rounds", 15));
  j.kappa = opt("kappa", 40);
  j.lambda = opt("lambda", 0);
  j.threads = std::max(1, static_cast<int>(opt("threads", 1)));
  if (j.em) {
    if (!info[7].IsTypedArray())
      throw Error(what + ": method 'em' needs init, a Float32Array of B * max(K) * N = " +
                  std::to_string(j.B * j.kmax * j.N) + " elements");
    j.init = static_cast<const float*>(typed_array_bytes(info[7], DType::F32, j.B * j.kmax * j.N, what + " init"));
  }
  return j;
}

// clusterParts(method 'em'|'hc', maps Float32Array [B*N*N], B, N, gridW, K Int32Array [B],
//              {rounds, kappa, lambda, threads}, init Float32Array [B*Kmax*N] | null) -> Int32Array [B*N]
// maps: the attention maps A for em, their Gram matrices A^T A for hc.
Napi::Value ClusterParts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MEDIC_NAPI_TRY
  const ClusterJob j = parse_job(info, "clusterParts");
  Napi::Int32Array out = Napi::Int32Array::New(env, static_cast<size_t>(j.B * j.N));
  j.run(out.Data());
  return out;
  MEDIC_NAPI_CATCH(env)
}

class ClusterWorker : public Napi::AsyncWorker {
 public:
  ClusterWorker(Napi::Env env, ClusterJob job, std::vector<Napi::ObjectReference> keep)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        job_(job),
        keep_(std::move(keep)),
        labels_(static_cast<size_t>(job.B * job.N)) {}

  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      job_.run(labels_.data());
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }

  void OnOK() override {
    Napi::Int32Array out = Napi::Int32Array::New(Env(), labels_.size());
    std::copy(labels_.begin(), labels_.end(), out.Data());
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error& err) override { deferred_.Reject(err.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  ClusterJob job_;
  std::vector<Napi::ObjectReference> keep_;  // the typed arrays job_ points into
  std::vector<int32_t> labels_;
};

// clusterPartsAsync(same arguments) -> Promise<Int32Array [B*N]>. The caller must not write to maps,
// K or init before the promise settles (they are read in place, not copied).
Napi::Value ClusterPartsAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MEDIC_NAPI_TRY
  const ClusterJob j = parse_job(info, "clusterPartsAsync");
  std::vector<Napi::ObjectReference> keep;
  for (int i : {1, 5, 7})
    if (info[i].IsTypedArray()) keep.push_back(Napi::Persistent(info[i].As<Napi::Object>()));
  auto* w = new ClusterWorker(env, j, std::move(keep));
  Napi::Promise promise = w->promise();
  w->Queue();
  return promise;
  MEDIC_NAPI_CATCH(env)
}

}  // namespace

void add_cluster_functions(Napi::Env env, Napi::Object exports) {
  exports.Set("clusterParts", Napi::Function::New(env, ClusterParts));
  exports.Set("clusterPartsAsync", Napi::Function::New(env, ClusterPartsAsync));
}

}  // namespace medic::napi
