// Module entry: the three classes and a few free functions that describe the build and the machine.
#include <cmath>
#include <vector>

#include "handles.h"

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
static Napi::Value Bf16GemmKernel(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), cpu_bf16_gemm_kernel());
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

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Engine", EngineWrap::Init(env));
  exports.Set("Tensor", TensorWrap::Init(env));
  exports.Set("Program", ProgramWrap::Init(env));
  exports.Set("cpuFeatures", Napi::Function::New(env, CpuFeatures));
  exports.Set("bf16GemmKernel", Napi::Function::New(env, Bf16GemmKernel));
  exports.Set("cudaCompiled", Napi::Function::New(env, CudaCompiled));
  exports.Set("cudaDeviceCount", Napi::Function::New(env, CudaDeviceCount));
  exports.Set("cudaDescribe", Napi::Function::New(env, CudaDescribe));
  exports.Set("defaultThreads", Napi::Function::New(env, DefaultThreads));
  exports.Set("opNames", Napi::Function::New(env, OpNames));
  exports.Set("cudaKernels", Napi::Function::New(env, CudaKernels));
  add_cluster_functions(env, exports);
  add_comm_functions(env, exports);
  exports.Set("abiVersion", Napi::Number::New(env, 2));
  return exports;
}

}  // namespace medic::napi

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return medic::napi::Init(env, exports); }
NODE_API_MODULE(medic_native, InitModule)
