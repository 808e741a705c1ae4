#include "handles.h"

namespace medic::napi {

void EngineState::dispose() {
  if (running) throw Error("engine.dispose(): a program step is still running; await it first");
  // Children remove themselves from the set as they release, so iterate over a copy.
  // Programs first: they hold bound tensors.
  std::set<Child*> copy = children;
  for (Child* c : copy)
    if (dynamic_cast<ProgramState*>(c)) c->release();
  copy = children;
  for (Child* c : copy) c->release();
  engine.reset();
}

Napi::Function EngineWrap::Init(Napi::Env env) {
  return DefineClass(
      env, "Engine",
      {InstanceMethod("describe", &EngineWrap::Describe), InstanceMethod("memory", &EngineWrap::Memory),
       InstanceMethod("threads", &EngineWrap::Threads), InstanceMethod("device", &EngineWrap::Device),
       InstanceMethod("runOp", &EngineWrap::RunOp), InstanceMethod("synchronize", &EngineWrap::Synchronize),
       InstanceMethod("attachComm", &EngineWrap::AttachComm), InstanceMethod("commStats", &EngineWrap::CommStats),
       InstanceMethod("dispose", &EngineWrap::Dispose)});
}

// new Engine(device: "cpu" | "cuda", index: number, threads: number)
EngineWrap::EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
  Napi::Env env = info.Env();
  MEDIC_NAPI_TRY
  std::string dev = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "cpu";
  int index = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 0;
  int threads = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : 0;
  medic::Device d;
  if (dev == "cpu")
    d = medic::Device::CPU;
  else if (dev == "cuda")
    d = medic::Device::CUDA;
  else
    throw Error("Engine: unknown device '" + dev + "': expected cpu or cuda");
  state = std::make_shared<EngineState>();
  state->engine = std::make_unique<medic::Engine>(d, index, threads);
  MEDIC_NAPI_CATCH(env)
}

// Garbage collection without dispose(): nothing to do here. Children (which may still be reachable:
// a JS Program holds no reference to its Engine) keep the EngineState, and so the engine, alive; each
// frees its own memory when it is disposed or collected, and the last one out frees the engine.
EngineWrap::~EngineWrap() = default;

Napi::Value EngineWrap::Describe(const Napi::CallbackInfo& info) {
  MEDIC_NAPI_TRY
  return Napi::String::New(info.Env(), state->get("engine.describe()").describe());
  MEDIC_NAPI_CATCH(info.Env())
}

Napi::Value EngineWrap::Threads(const Napi::CallbackInfo& info) {
  MEDIC_NAPI_TRY
  return Napi::Number::New(info.Env(), state->get("engine.threads()").pool().size());
  MEDIC_NAPI_CATCH(info.Env())
}

Napi::Value EngineWrap::Device(const Napi::CallbackInfo& info) {
  MEDIC_NAPI_TRY
  medic::Engine& e = state->get("engine.device()");
  return Napi::String::New(info.Env(),
                           e.device() == medic::Device::CPU ? "cpu" : "cuda:" + std::to_string(e.device_index()));
  MEDIC_NAPI_CATCH(info.Env())
}

Napi::Value EngineWrap::Memory(const Napi::CallbackInfo& info) {
  MEDIC_NAPI_TRY
  MemoryStats m = state->get("engine.memory()").memory();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("liveTensors", static_cast<double>(m.live_tensors));
  o.Set("livePrograms", static_cast<double>(m.live_programs));
  o.Set("hostBytes", static_cast<double>(m.host_bytes));
  o.Set("deviceBytes", static_cast<double>(m.device_bytes));
  o.Set("peakHostBytes", static_cast<double>(m.peak_host_bytes));
  o.Set("peakDeviceBytes", static_cast<double>(m.peak_device_bytes));
  return o;
  MEDIC_NAPI_CATCH(info.Env())
}

// runOp(name, inputs: (Tensor|null)[], outputs: (Tensor|null)[], attrs?): runs one op now (eager mode).
Napi::Value EngineWrap::RunOp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MEDIC_NAPI_TRY
  medic::Engine& e = state->get("engine.op()");
  // A step in flight owns the device stream (and may be capturing it into a CUDA graph): eager work
  // would interleave with it, so it waits for the step.
  if (state->running) throw Error("engine.op(): a program step is running on this engine; await it first");
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsArray() || !info[2].IsArray())
    throw Error("engine.op(name, inputs, outputs, attrs?): expected a string and two arrays of tensors");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  const OpDef* def = find_op(name);
  if (!def) throw Error("unknown op '" + name + "'");
  auto collect = [&](Napi::Array arr, const char* what) {
    std::vector<Tensor> v;
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      std::string slot = name + ": " + what + " " + std::to_string(i);
      TensorWrap* t = unwrap_tensor(arr.Get(i), slot);
      if (!t) {
        v.emplace_back();
        continue;
      }
      if (t->state->owner != state) throw Error(slot + ": tensor belongs to another engine");
      v.push_back(t->state->get(slot.c_str()));
    }
    return v;
  };
  std::vector<Tensor> ins = collect(info[1].As<Napi::Array>(), "input");
  std::vector<Tensor> outs = collect(info[2].As<Napi::Array>(), "output");
  Attrs attrs = attrs_from_js(info.Length() > 3 ? info[3] : env.Undefined(), name.c_str());
  OpCall call{def,    ins.data(),  static_cast<int>(ins.size()), outs.data(), static_cast<int>(outs.size()),
              &attrs, &e.context()};
  run_op(call, true);
  e.synchronize();
  return env.Undefined();
  MEDIC_NAPI_CATCH(env)
}

Napi::Value EngineWrap::Synchronize(const Napi::CallbackInfo& info) {
  MEDIC_NAPI_TRY
  state->get("engine.synchronize()").synchronize();
  return info.Env().Undefined();
  MEDIC_NAPI_CATCH(info.Env())
}

Napi::Value EngineWrap::Dispose(const Napi::CallbackInfo& info) {
  MEDIC_NAPI_TRY
  if (state->engine) state->dispose();
  return info.Env().Undefined();
  MEDIC_NAPI_CATCH(info.Env())
}

}  // namespace medic::napi
