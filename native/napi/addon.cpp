// Module entry: the three classes and a few free functions that describe the build and the machine.
#include <algorithm>
#include <cmath>
#include <thread>
#include <vector>

#include "handles.h"
#include "medic/cluster.h"

namespace medic::napi {

Shape shape_from_js(const Napi::Value& v, const char* what) {
  if (!v.IsArray()) throw Error(std::string(what) + ": shape must be an array of non-negative integers");
  Napi::Array a = v.As<Napi::Array>();
  if (a.Length() > static_cast<uint32_t>(kMaxDims))
    throw Error(std::string(what) + ": shape has " + std::to_string(a.Length()) + " dims, at most " +
                std::to_string(kMaxDims) + " are supported");
  Shape s;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0) || std::floor(d) != d || d > 9.007e15)
      throw Error(std::string(what) + ": shape[" + std::to_string(i) + "] must be a non-negative integer, got " +
                  e.ToString().Utf8Value());
    s.d[s.nd++] = static_cast<int64_t>(d);
  }
  return s;
}

Napi::Array shape_to_js(Napi::Env env, const Shape& s) {
  Napi::Array a = Napi::Array::New(env, s.nd);
  for (int i = 0; i < s.nd; ++i) a.Set(i, Napi::Number::New(env, static_cast<double>(s.d[i])));
  return a;
}

Attrs attrs_from_js(const Napi::Value& v, const char* what) {
  Attrs attrs;
  if (v.IsUndefined() || v.IsNull()) return attrs;
  if (!v.IsObject()) throw Error(std::string(what) + ": attrs must be an object of numbers");
  Napi::Object o = v.As<Napi::Object>();
  Napi::Array keys = o.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    std::string k = keys.Get(i).ToString().Utf8Value();
    Napi::Value val = o.Get(k);
    if (val.IsBoolean()) {
      attrs.set(k, val.As<Napi::Boolean>().Value() ? 1 : 0);
    } else if (val.IsNumber()) {
      attrs.set(k, val.As<Napi::Number>().DoubleValue());
    } else {
      throw Error(std::string(what) + ": attr '" + k + "' must be a number or boolean, got " +
                  val.ToString().Utf8Value());
    }
  }
  return attrs;
}

static napi_typedarray_type typed_array_type(DType d) {
  switch (d) {
    case DType::F32: return napi_float32_array;
    case DType::BF16: return napi_uint16_array;
    case DType::I32: return napi_int32_array;
    case DType::U8: return napi_uint8_array;
  }
  return napi_float32_array;
}

static const char* typed_array_class(DType d) {
  switch (d) {
    case DType::F32: return "Float32Array";
    case DType::BF16: return "Uint16Array (bf16 bits)";
    case DType::I32: return "Int32Array";
    case DType::U8: return "Uint8Array";
  }
  return "?";
}

Napi::TypedArray typed_array_for(Napi::Env env, DType dtype, int64_t numel) {
  size_t n = static_cast<size_t>(numel);
  switch (dtype) {
    case DType::F32: return Napi::Float32Array::New(env, n);
    case DType::BF16: return Napi::Uint16Array::New(env, n);
    case DType::I32: return Napi::Int32Array::New(env, n);
    case DType::U8: return Napi::Uint8Array::New(env, n);
  }
  return Napi::Float32Array::New(env, n);
}

const void* typed_array_bytes(const Napi::Value& v, DType dtype, int64_t numel, const std::string& what) {
  if (!v.IsTypedArray())
    throw Error(what + ": expected a " + typed_array_class(dtype) + " of " + std::to_string(numel) + " elements, got " +
                (v.IsUndefined() ? std::string("nothing") : v.ToString().Utf8Value().substr(0, 40)));
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  if (ta.TypedArrayType() != typed_array_type(dtype))
    throw Error(what + ": expected a " + typed_array_class(dtype) + " (dtype " + dtype_name(dtype) +
                "), got another typed array kind");
  if (static_cast<int64_t>(ta.ElementLength()) != numel)
    throw Error(what + ": expected " + std::to_string(numel) + " elements, got " + std::to_string(ta.ElementLength()));
  return typed_array_data(ta);
}

void* typed_array_data(const Napi::TypedArray& ta) {
  // napi_get_typedarray_info gives the element pointer directly, also for typed arrays over a
  // SharedArrayBuffer (the data loader's worker batches), where ArrayBuffer() would fail.
  napi_typedarray_type type;
  size_t length;
  void* data = nullptr;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(ta.Env(), ta, &type, &length, &data, &buffer, &offset) != napi_ok)
    throw Error("could not read a typed array's memory");
  return data;
}

TensorWrap* unwrap_tensor(const Napi::Value& v, const std::string& what) {
  if (v.IsNull() || v.IsUndefined()) return nullptr;
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(TensorWrap::ctor->Value()))
    throw Error(what + ": expected a Tensor (or null for an empty optional slot)");
  return TensorWrap::Unwrap(v.As<Napi::Object>());
}

static Napi::Value CpuFeatures(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), cpu_features_string());
}
static Napi::Value CudaCompiled(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), cuda_compiled());
}
static Napi::Value CudaDeviceCount(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), cuda_device_count());
}
static Napi::Value CudaDescribe(const Napi::CallbackInfo& info) {
  int i = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
  return Napi::String::New(info.Env(), cuda_describe(i));
}
static Napi::Value DefaultThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), default_thread_count());
}
static Napi::Value OpNames(const Napi::CallbackInfo& info) {
  auto names = op_names();
  Napi::Array a = Napi::Array::New(info.Env(), names.size());
  for (size_t i = 0; i < names.size(); ++i) a.Set(static_cast<uint32_t>(i), names[i]);
  return a;
}

// Ops that have a CUDA kernel compiled into this binary.
static Napi::Value CudaKernels(const Napi::CallbackInfo& info) {
  Napi::Array a = Napi::Array::New(info.Env());
  uint32_t k = 0;
  for (const std::string& name : op_names())
    if (find_op(name)->cuda) a.Set(k++, name);
  return a;
}

// clusterParts(method 'em'|'hc', maps Float32Array [B*N*N], B, N, gridW, K Int32Array [B],
//              {rounds, kappa, lambda, threads}, init Float32Array [B*Kmax*N] | null) -> Int32Array [B*N]
// Evolved masking's parts (medic/cluster.h), one image per task over `threads` host threads. maps: the
// attention maps A for em, their Gram matrices A^T A for hc. Synchronous: the caller decides where it
// runs; every input is validated here, with the argument named.
static Napi::Value ClusterParts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MEDIC_NAPI_TRY
  const std::string what = "clusterParts";
  auto num = [&](int i, const char* name) -> int64_t {
    if (!info[i].IsNumber()) throw Error(what + ": " + name + " must be a number");
    const double d = info[i].As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || std::floor(d) != d)
      throw Error(what + ": " + name + " must be a non-negative integer, got " + std::to_string(d));
    return static_cast<int64_t>(d);
  };
  const std::string method = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  if (method != "em" && method != "hc") throw Error(what + ": method must be 'em' or 'hc', got '" + method + "'");
  const int64_t B = num(2, "B"), N = num(3, "N"), grid_w = num(4, "gridW");
  if (N < 1 || grid_w < 1 || N % grid_w)
    throw Error(what + ": N = " + std::to_string(N) + " is not a grid of width " + std::to_string(grid_w));
  const float* maps = static_cast<const float*>(
      typed_array_bytes(info[1], DType::F32, B * N * N, what + (method == "em" ? " attn" : " gram")));
  const int32_t* K = static_cast<const int32_t*>(typed_array_bytes(info[5], DType::I32, B, what + " K"));
  int64_t kmax = 0;
  for (int64_t b = 0; b < B; ++b) {
    if (K[b] < 1 || K[b] > N)
      throw Error(what + ": K[" + std::to_string(b) + "] must be in [1, N=" + std::to_string(N) + "], got " +
                  std::to_string(K[b]));
    kmax = std::max<int64_t>(kmax, K[b]);
  }
  Napi::Object o = info[6].IsObject() ? info[6].As<Napi::Object>() : Napi::Object::New(env);
  auto opt = [&](const char* k, double d) {
    return o.Has(k) && o.Get(k).IsNumber() ? o.Get(k).As<Napi::Number>().DoubleValue() : d;
  };
  const int64_t rounds = static_cast<int64_t>(opt("rounds", 15));
  const double kappa = opt("kappa", 40), lambda = opt("lambda", 0);
  const int threads = std::max(1, static_cast<int>(opt("threads", 1)));
  const float* init = nullptr;
  if (method == "em") {
    if (!info[7].IsTypedArray())
      throw Error(what + ": method 'em' needs init, a Float32Array of B * max(K) * N = " +
                  std::to_string(B * kmax * N) + " elements");
    init = static_cast<const float*>(typed_array_bytes(info[7], DType::F32, B * kmax * N, what + " init"));
  }
  Napi::Int32Array out = Napi::Int32Array::New(env, static_cast<size_t>(B * N));
  int32_t* labels = out.Data();
  auto one = [&](int64_t b) {
    const float* a = maps + b * N * N;
    if (init)
      cluster_em(a, N, K[b], init + b * kmax * N, rounds, kappa, labels + b * N);
    else
      cluster_hc(a, N, K[b], grid_w, lambda, labels + b * N);
  };
  const int64_t nt = std::min<int64_t>(threads, B);
  if (nt <= 1) {
    for (int64_t b = 0; b < B; ++b) one(b);
  } else {
    std::vector<std::thread> pool;
    for (int64_t t = 0; t < nt; ++t)
      pool.emplace_back([&, t] {
        for (int64_t b = t; b < B; b += nt) one(b);
      });
    for (auto& th : pool) th.join();
  }
  return out;
  MEDIC_NAPI_CATCH(env)
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Engine", EngineWrap::Init(env));
  exports.Set("Tensor", TensorWrap::Init(env));
  exports.Set("Program", ProgramWrap::Init(env));
  exports.Set("cpuFeatures", Napi::Function::New(env, CpuFeatures));
  exports.Set("cudaCompiled", Napi::Function::New(env, CudaCompiled));
  exports.Set("cudaDeviceCount", Napi::Function::New(env, CudaDeviceCount));
  exports.Set("cudaDescribe", Napi::Function::New(env, CudaDescribe));
  exports.Set("defaultThreads", Napi::Function::New(env, DefaultThreads));
  exports.Set("opNames", Napi::Function::New(env, OpNames));
  exports.Set("cudaKernels", Napi::Function::New(env, CudaKernels));
  exports.Set("clusterParts", Napi::Function::New(env, ClusterParts));
  add_comm_functions(env, exports);
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  return exports;
}

}  // namespace medic::napi

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return medic::napi::Init(env, exports); }
NODE_API_MODULE(medic_native, InitModule)
