// Data parallel from JS: MPI's world (init, finalize, abort, host collectives), library probes for
// `doctor`, and an engine's communicator for the allreduce ops (medic/comm.h).
//
// The host collectives block the JS thread; they run between steps (evaluation, start, end), never
// while a step's worker thread is inside MPI, which is what MPI_THREAD_SERIALIZED asks.
#include "handles.h"
#include "medic/comm.h"

namespace medic::napi {

namespace {

double number_arg(const Napi::CallbackInfo& info, size_t i, double def) {
  return info.Length() > i && info[i].IsNumber() ? info[i].As<Napi::Number>().DoubleValue() : def;
}

template <typename P>
Napi::Object probe_to_js(Napi::Env env, const P& p) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("found", p.found);
  o.Set("library", p.library);
  o.Set("version", p.version);
  o.Set("reason", p.reason);
  return o;
}

Napi::Value MpiProbe(const Napi::CallbackInfo& info) { return probe_to_js(info.Env(), mpi::probe()); }
Napi::Value NcclProbe(const Napi::CallbackInfo& info) { return probe_to_js(info.Env(), nccl::probe()); }

// mpiInit(timeoutSec) -> { rank, size, localRank, localSize }
Napi::Value MpiInit(const Napi::CallbackInfo& info) {
  MEDIC_NAPI_TRY
  mpi::World w = mpi::init(number_arg(info, 0, 300));
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("rank", w.rank);
  o.Set("size", w.size);
  o.Set("localRank", w.local_rank);
  o.Set("localSize", w.local_size);
  return o;
  MEDIC_NAPI_CATCH(info.Env())
}

Napi::Value MpiActive(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), mpi::active()); }

Napi::Value MpiFinalize(const Napi::CallbackInfo& info) {
  MEDIC_NAPI_TRY
  mpi::finalize();
  return info.Env().Undefined();
  MEDIC_NAPI_CATCH(info.Env())
}

// mpiAbort(code): MPI_Abort on the world (the launcher stops every rank), then exits.
Napi::Value MpiAbort(const Napi::CallbackInfo& info) { mpi::abort(static_cast<int>(number_arg(info, 0, 1))); }

Napi::Value MpiSetTimeout(const Napi::CallbackInfo& info) {
  mpi::set_timeout(number_arg(info, 0, 300));
  return info.Env().Undefined();
}

Napi::Value MpiBarrier(const Napi::CallbackInfo& info) {
  MEDIC_NAPI_TRY
  std::string what = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "a barrier";
  mpi::barrier(what.c_str());
  return info.Env().Undefined();
  MEDIC_NAPI_CATCH(info.Env())
}

Napi::TypedArray typed_arg(const Napi::CallbackInfo& info, const char* what) {
  if (info.Length() < 1 || !info[0].IsTypedArray()) throw Error(std::string(what) + ": expected a typed array");
  return info[0].As<Napi::TypedArray>();
}

// mpiBcast(typedArray, root): in place.
Napi::Value MpiBcast(const Napi::CallbackInfo& info) {
  MEDIC_NAPI_TRY
  Napi::TypedArray a = typed_arg(info, "mpiBcast");
  mpi::bcast(typed_array_data(a), a.ByteLength(), static_cast<int>(number_arg(info, 1, 0)));
  return info.Env().Undefined();
  MEDIC_NAPI_CATCH(info.Env())
}

// mpiAllgather(typedArray) -> { data: Uint8Array (every rank's bytes in rank order), sizes: bytes per rank }
Napi::Value MpiAllgather(const Napi::CallbackInfo& info) {
  MEDIC_NAPI_TRY
  Napi::Env env = info.Env();
  Napi::TypedArray a = typed_arg(info, "mpiAllgather");
  std::vector<size_t> sizes;
  std::vector<uint8_t> all = mpi::allgather(typed_array_data(a), a.ByteLength(), sizes);
  Napi::Uint8Array data = Napi::Uint8Array::New(env, all.size());
  if (!all.empty()) std::memcpy(typed_array_data(data), all.data(), all.size());
  Napi::Array js_sizes = Napi::Array::New(env, sizes.size());
  for (size_t r = 0; r < sizes.size(); ++r) js_sizes.Set(static_cast<uint32_t>(r), static_cast<double>(sizes[r]));
  Napi::Object o = Napi::Object::New(env);
  o.Set("data", data);
  o.Set("sizes", js_sizes);
  return o;
  MEDIC_NAPI_CATCH(info.Env())
}

// mpiAllreduce(Float64Array, 'sum' | 'max'): in place.
Napi::Value MpiAllreduce(const Napi::CallbackInfo& info) {
  MEDIC_NAPI_TRY
  Napi::TypedArray a = typed_arg(info, "mpiAllreduce");
  if (a.TypedArrayType() != napi_float64_array) throw Error("mpiAllreduce: expected a Float64Array");
  std::string op = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "sum";
  if (op != "sum" && op != "max") throw Error("mpiAllreduce: op must be 'sum' or 'max', got '" + op + "'");
  mpi::allreduce_f64(static_cast<double*>(typed_array_data(a)), static_cast<int>(a.ElementLength()),
                     op == "max" ? 1 : 0);
  return info.Env().Undefined();
  MEDIC_NAPI_CATCH(info.Env())
}

}  // namespace

void add_comm_functions(Napi::Env env, Napi::Object exports) {
  exports.Set("mpiProbe", Napi::Function::New(env, MpiProbe));
  exports.Set("ncclProbe", Napi::Function::New(env, NcclProbe));
  exports.Set("mpiInit", Napi::Function::New(env, MpiInit));
  exports.Set("mpiActive", Napi::Function::New(env, MpiActive));
  exports.Set("mpiFinalize", Napi::Function::New(env, MpiFinalize));
  exports.Set("mpiAbort", Napi::Function::New(env, MpiAbort));
  exports.Set("mpiSetTimeout", Napi::Function::New(env, MpiSetTimeout));
  exports.Set("mpiBarrier", Napi::Function::New(env, MpiBarrier));
  exports.Set("mpiBcast", Napi::Function::New(env, MpiBcast));
  exports.Set("mpiAllgather", Napi::Function::New(env, MpiAllgather));
  exports.Set("mpiAllreduce", Napi::Function::New(env, MpiAllreduce));
}

// engine.attachComm(backend: 'mpi' | 'nccl', timeoutSec): rank and size are MPI's world (NCCL alone,
// without MPI: one rank, a smoke run).
Napi::Value EngineWrap::AttachComm(const Napi::CallbackInfo& info) {
  MEDIC_NAPI_TRY
  Engine& e = state->get("engine.attachComm()");
  if (state->running) throw Error("engine.attachComm(): a program step is running; await it first");
  std::string backend = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  auto s = std::make_unique<CommState>();
  s->timeout_s = number_arg(info, 1, 300);
  if (mpi::active()) {
    mpi::World w = mpi::init(s->timeout_s);
    s->rank = w.rank;
    s->size = w.size;
  }
  if (backend == "mpi") {
    if (!mpi::active()) throw Error("engine.attachComm('mpi'): MPI is not initialised (mpiInit first)");
    if (e.device() != Device::CPU)
      throw Error("engine.attachComm('mpi'): a CUDA engine reduces device memory with NCCL; use 'nccl'");
    s->backend = "mpi";
  } else if (backend == "nccl") {
    nccl::attach(e, *s);
  } else {
    throw Error("engine.attachComm(): backend must be 'mpi' or 'nccl', got '" + backend + "'");
  }
  e.attach_comm(std::move(s));
  return info.Env().Undefined();
  MEDIC_NAPI_CATCH(info.Env())
}

// engine.commStats() -> null without a communicator, else cumulative host-side counters.
Napi::Value EngineWrap::CommStats(const Napi::CallbackInfo& info) {
  MEDIC_NAPI_TRY
  Engine& e = state->get("engine.commStats()");
  CommState* s = e.comm();
  if (!s) return info.Env().Null();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("backend", s->backend);
  o.Set("rank", s->rank);
  o.Set("size", s->size);
  o.Set("buckets", static_cast<double>(s->buckets));
  o.Set("values", static_cast<double>(s->values));
  o.Set("startMs", s->start_ms);
  o.Set("waitMs", s->wait_ms);
  return o;
  MEDIC_NAPI_CATCH(info.Env())
}

}  // namespace medic::napi
