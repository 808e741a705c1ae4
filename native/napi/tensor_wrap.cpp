#include "handles.h"

namespace medic::napi {

Napi::FunctionReference* TensorWrap::ctor = nullptr;

TensorState::TensorState(std::shared_ptr<EngineState> o, Shape shape, DType dtype) : Child(std::move(o)) {
  Engine& e = owner->get("engine.tensor()");
  if (owner->running) throw Error("engine.tensor(): a program step is running on this engine; await it first");
  tensor.shape = shape;
  tensor.dtype = dtype;
  tensor.device = e.device();
  tensor.data = e.alloc(std::max<size_t>(tensor.nbytes(), 1));
  alive = true;
  e.count_tensor(1);
}

void TensorState::release() {
  if (!alive) return;
  alive = false;
  if (owner && owner->engine) {
    owner->engine->release(tensor.data, std::max<size_t>(tensor.nbytes(), 1));
    owner->engine->count_tensor(-1);
  }
  tensor.data = nullptr;
  if (owner) owner->children.erase(this);
}

Napi::Function TensorWrap::Init(Napi::Env env) {
  Napi::Function f =
      DefineClass(env, "Tensor",
                  {InstanceMethod("shape", &TensorWrap::Shape), InstanceMethod("dtype", &TensorWrap::DTypeName),
                   InstanceMethod("read", &TensorWrap::Read), InstanceMethod("write", &TensorWrap::Write),
                   InstanceMethod("disposed", &TensorWrap::Disposed), InstanceMethod("dispose", &TensorWrap::Dispose)});
  ctor = new Napi::FunctionReference(Napi::Persistent(f));
  return f;
}

// new Tensor(engine, shape, dtype, data?): zero-filled unless data (a matching typed array) is given.
TensorWrap::TensorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorWrap>(info) {
  Napi::Env env = info.Env();
  MEDIC_NAPI_TRY
  if (info.Length() < 3 || !info[0].IsObject()) throw Error("Tensor(engine, shape, dtype, data?): engine missing");
  EngineWrap* ew = Napi::ObjectWrap<EngineWrap>::Unwrap(info[0].As<Napi::Object>());
  medic::Shape shape = shape_from_js(info[1], "engine.tensor()");
  DType dtype = dtype_from_name(info[2].ToString().Utf8Value());
  state = std::make_shared<TensorState>(ew->state, shape, dtype);
  if (info.Length() > 3 && !info[3].IsUndefined() && !info[3].IsNull()) {
    const void* src = typed_array_bytes(info[3], dtype, shape.numel(),
                                        "engine.tensor(" + shape.str() + ", " + dtype_name(dtype) + ") data");
    ew->state->engine->to_device(state->tensor.data, src, state->tensor.nbytes());
  }
  MEDIC_NAPI_CATCH(env)
}

Napi::Value TensorWrap::Shape(const Napi::CallbackInfo& info) {
  MEDIC_NAPI_TRY
  return shape_to_js(info.Env(), state->get("tensor.shape").shape);
  MEDIC_NAPI_CATCH(info.Env())
}

Napi::Value TensorWrap::DTypeName(const Napi::CallbackInfo& info) {
  MEDIC_NAPI_TRY
  return Napi::String::New(info.Env(), dtype_name(state->get("tensor.dtype").dtype));
  MEDIC_NAPI_CATCH(info.Env())
}

Napi::Value TensorWrap::Read(const Napi::CallbackInfo& info) {
  MEDIC_NAPI_TRY
  const Tensor& t = state->get("tensor.read()");
  if (state->owner->running) throw Error("tensor.read(): a program step is running on this engine; await it first");
  // read(into): copy into the caller's typed array (same kind and length), so a loop that reads a
  // large tensor repeatedly (kNN similarity blocks) allocates nothing.
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    void* dst =
        const_cast<void*>(typed_array_bytes(info[0], t.dtype, t.numel(), "tensor.read(into) of " + t.describe()));
    state->owner->get("tensor.read()").to_host(dst, t.data, t.nbytes());
    return info[0];
  }
  Napi::TypedArray out = typed_array_for(info.Env(), t.dtype, t.numel());
  void* dst = typed_array_data(out);
  state->owner->get("tensor.read()").to_host(dst, t.data, t.nbytes());
  return out;
  MEDIC_NAPI_CATCH(info.Env())
}

Napi::Value TensorWrap::Write(const Napi::CallbackInfo& info) {
  MEDIC_NAPI_TRY
  const Tensor& t = state->get("tensor.write()");
  if (state->owner->running) throw Error("tensor.write(): a program step is running on this engine; await it first");
  const void* src = typed_array_bytes(info[0], t.dtype, t.numel(), "tensor.write() on " + t.describe());
  state->owner->get("tensor.write()").to_device(t.data, src, t.nbytes());
  return info.Env().Undefined();
  MEDIC_NAPI_CATCH(info.Env())
}

Napi::Value TensorWrap::Disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !state || !state->alive);
}

Napi::Value TensorWrap::Dispose(const Napi::CallbackInfo& info) {
  MEDIC_NAPI_TRY
  if (state->alive && state->owner->running)
    throw Error("tensor.dispose(): a program step is running on this engine; await it first");
  if (state->alive && state->bound_by > 0)
    throw Error("tensor.dispose(): the tensor is bound to " + std::to_string(state->bound_by) +
                " live program(s); dispose them first");
  state->release();
  return info.Env().Undefined();
  MEDIC_NAPI_CATCH(info.Env())
}

}  // namespace medic::napi
