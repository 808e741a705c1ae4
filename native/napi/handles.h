// Native state behind the JS handles. The only folder that includes napi.h is native/napi.
//
// Ownership: an EngineState owns the medic::Engine and knows every live child (tensors, programs).
// Children hold a shared_ptr to it, so finalisation order never matters (collecting the engine's
// handle releases nothing a live child needs). dispose() on any handle releases its native memory at
// once; engine.dispose() releases all of its children too.
// A disposed handle used again throws "<what> was disposed".
#pragma once

#include <napi.h>

#include <memory>
#include <set>
#include <string>

#include "medic/engine.h"
#include "medic/program.h"

namespace medic::napi {

struct Child;

struct EngineState {
  std::unique_ptr<Engine> engine;
  std::set<Child*> children;
  int running = 0;  // program steps in flight

  Engine& get(const char* what) {
    if (!engine) throw Error(std::string(what) + ": the engine was disposed");
    return *engine;
  }
  void dispose();
};

struct Child {
  std::shared_ptr<EngineState> owner;
  explicit Child(std::shared_ptr<EngineState> o) : owner(std::move(o)) { owner->children.insert(this); }
  virtual ~Child() {
    if (owner) owner->children.erase(this);
  }
  virtual void release() = 0;  // free native memory; idempotent
};

struct TensorState : Child {
  Tensor tensor;  // data == nullptr once released
  bool alive = false;
  int bound_by = 0;  // live programs that bind this tensor; it cannot be disposed before them
  TensorState(std::shared_ptr<EngineState> o, Shape shape, DType dtype);
  ~TensorState() override { release(); }
  void release() override;
  const Tensor& get(const char* what) const {
    if (!alive) throw Error(std::string(what) + ": tensor was disposed");
    return tensor;
  }
};

struct ProgramState : Child {
  std::unique_ptr<Program> program;
  std::vector<std::shared_ptr<TensorState>> bound;  // keeps bound tensors' state objects reachable
  bool running = false;
  bool dispose_pending = false;
  explicit ProgramState(std::shared_ptr<EngineState> o) : Child(std::move(o)) {}
  ~ProgramState() override { release(); }
  void release() override;
  Program& get(const char* what) {
    if (!program) throw Error(std::string(what) + ": program was disposed");
    return *program;
  }
};

// Wrappers (one JS class each).
class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit EngineWrap(const Napi::CallbackInfo& info);
  ~EngineWrap() override;
  std::shared_ptr<EngineState> state;

 private:
  Napi::Value Describe(const Napi::CallbackInfo& info);
  Napi::Value Memory(const Napi::CallbackInfo& info);
  Napi::Value Threads(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);
  Napi::Value RunOp(const Napi::CallbackInfo& info);
  Napi::Value Synchronize(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value AttachComm(const Napi::CallbackInfo& info);  // comm_wrap.cpp
  Napi::Value CommStats(const Napi::CallbackInfo& info);   // comm_wrap.cpp
};

// The process-wide MPI / NCCL functions of the module (comm_wrap.cpp).
void add_comm_functions(Napi::Env env, Napi::Object exports);
// Evolved masking's clustering, synchronous and on a worker (cluster_wrap.cpp).
void add_cluster_functions(Napi::Env env, Napi::Object exports);

class TensorWrap : public Napi::ObjectWrap<TensorWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit TensorWrap(const Napi::CallbackInfo& info);
  std::shared_ptr<TensorState> state;
  static Napi::FunctionReference* ctor;

 private:
  Napi::Value Shape(const Napi::CallbackInfo& info);
  Napi::Value DTypeName(const Napi::CallbackInfo& info);
  Napi::Value Read(const Napi::CallbackInfo& info);
  Napi::Value Write(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
};

class ProgramWrap : public Napi::ObjectWrap<ProgramWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit ProgramWrap(const Napi::CallbackInfo& info);
  std::shared_ptr<ProgramState> state;

 private:
  Napi::Value Run(const Napi::CallbackInfo& info);
  Napi::Value Read(const Napi::CallbackInfo& info);
  Napi::Value Write(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
};

// Conversions shared by the wrappers.
Shape shape_from_js(const Napi::Value& v, const char* what);
Napi::Array shape_to_js(Napi::Env env, const Shape& s);
Attrs attrs_from_js(const Napi::Value& v, const char* what);
// A typed array matching dtype (Float32Array for f32, Uint16Array for bf16, Int32Array, Uint8Array).
Napi::TypedArray typed_array_for(Napi::Env env, DType dtype, int64_t numel);
// Checks that `v` is a typed array of the dtype's class and `numel` elements; returns its bytes.
const void* typed_array_bytes(const Napi::Value& v, DType dtype, int64_t numel, const std::string& what);
// The first element of a typed array (plain or shared buffer).
void* typed_array_data(const Napi::TypedArray& ta);
TensorWrap* unwrap_tensor(const Napi::Value& v, const std::string& what);  // nullptr for null/undefined

}  // namespace medic::napi

// Convert engine errors into JS exceptions at every entry point.
#define MEDIC_NAPI_TRY try {
#define MEDIC_NAPI_CATCH(env)              \
  }                                        \
  catch (const Napi::Error&) {             \
    throw;                                 \
  }                                        \
  catch (const std::exception& e) {        \
    throw Napi::Error::New(env, e.what()); \
  }
