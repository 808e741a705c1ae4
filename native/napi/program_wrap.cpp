// Program handles: compile a graph once, then run it per step off the JS thread.
#include <chrono>

#include "handles.h"

namespace medic::napi {

void ProgramState::release() {
  if (!program) return;
  if (running) {  // the step in flight finishes first; its completion releases
    dispose_pending = true;
    return;
  }
  program.reset();
  for (auto& t : bound) t->bound_by -= 1;
  bound.clear();
  if (owner) owner->children.erase(this);
}

Napi::Function ProgramWrap::Init(Napi::Env env) {
  return DefineClass(env, "Program",
                     {InstanceMethod("run", &ProgramWrap::Run), InstanceMethod("read", &ProgramWrap::Read),
                      InstanceMethod("write", &ProgramWrap::Write), InstanceMethod("info", &ProgramWrap::Info),
                      InstanceMethod("dispose", &ProgramWrap::Dispose)});
}

// new Program(engine, { buffers: [{name, shape, dtype, kind, of?, offset?, tensor?}], ops: [{op, in, out, attrs?}] })
ProgramWrap::ProgramWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ProgramWrap>(info) {
  Napi::Env env = info.Env();
  MEDIC_NAPI_TRY
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsObject())
    throw Error("Program(engine, spec): expected an engine and a spec object");
  EngineWrap* ew = Napi::ObjectWrap<EngineWrap>::Unwrap(info[0].As<Napi::Object>());
  medic::Engine& engine = ew->state->get("engine.program()");
  Napi::Object spec = info[1].As<Napi::Object>();
  if (!spec.Get("buffers").IsArray() || !spec.Get("ops").IsArray())
    throw Error("program spec: expected arrays 'buffers' and 'ops'");
  Napi::Array jb = spec.Get("buffers").As<Napi::Array>();
  Napi::Array jo = spec.Get("ops").As<Napi::Array>();
  auto str = [](Napi::Object o, const char* k) {
    Napi::Value v = o.Get(k);
    return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
  };

  state = std::make_shared<ProgramState>(ew->state);
  std::vector<BufferSpec> buffers;
  std::vector<std::shared_ptr<TensorState>> bound;
  for (uint32_t i = 0; i < jb.Length(); ++i) {
    Napi::Object o = jb.Get(i).As<Napi::Object>();
    BufferSpec b;
    b.name = str(o, "name");
    std::string what = "program buffer '" + b.name + "'";
    b.kind = buffer_kind_from_name(str(o, "kind"));
    b.dtype = dtype_from_name(o.Has("dtype") ? str(o, "dtype") : "f32");
    b.shape = shape_from_js(o.Get("shape"), what.c_str());
    b.of = str(o, "of");
    b.offset = o.Get("offset").IsNumber() ? static_cast<int64_t>(o.Get("offset").As<Napi::Number>().DoubleValue()) : 0;
    if (b.kind == BufferKind::Bound) {
      TensorWrap* t = unwrap_tensor(o.Get("tensor"), what);
      if (!t) throw Error(what + ": kind 'bound' needs a tensor");
      if (t->state->owner != ew->state) throw Error(what + ": tensor belongs to another engine");
      b.bound = t->state->get(what.c_str());
      bound.push_back(t->state);
    }
    buffers.push_back(std::move(b));
  }
  std::vector<OpSpec> ops;
  for (uint32_t i = 0; i < jo.Length(); ++i) {
    Napi::Object o = jo.Get(i).As<Napi::Object>();
    OpSpec s;
    s.op = str(o, "op");
    auto names = [&](const char* k, std::vector<std::string>& dst) {
      Napi::Value v = o.Get(k);
      if (!v.IsArray())
        throw Error("program op " + std::to_string(i) + " (" + s.op + "): '" + k +
                    "' must be an array of buffer names");
      Napi::Array a = v.As<Napi::Array>();
      for (uint32_t j = 0; j < a.Length(); ++j) {
        Napi::Value e = a.Get(j);
        dst.push_back(e.IsString() ? e.As<Napi::String>().Utf8Value() : std::string());
      }
    };
    names("in", s.in);
    names("out", s.out);
    s.attrs = attrs_from_js(o.Get("attrs"), ("program op " + std::to_string(i) + " (" + s.op + ")").c_str());
    ops.push_back(std::move(s));
  }
  state->program = std::make_unique<Program>(engine, std::move(buffers), std::move(ops));
  for (auto& t : bound) t->bound_by += 1;
  state->bound = std::move(bound);
  MEDIC_NAPI_CATCH(env)
}

namespace {

// One step: stage inputs, run every op, read outputs back. Runs on a libuv worker thread.
class StepWorker : public Napi::AsyncWorker {
 public:
  StepWorker(Napi::Env env, std::shared_ptr<ProgramState> st, std::vector<std::pair<int, const void*>> inputs,
             std::vector<Napi::ObjectReference> keep, std::vector<int> outputs, bool profile)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        st_(std::move(st)),
        inputs_(std::move(inputs)),
        keep_(std::move(keep)),
        output_ids_(std::move(outputs)),
        profile_(profile) {}

  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      auto t0 = std::chrono::steady_clock::now();
      Program& p = *st_->program;
      Engine& e = *st_->owner->engine;
      for (auto& [id, src] : inputs_) e.to_device(p.tensor(id).data, src, p.tensor(id).nbytes());
      p.run(profile_);
      for (int id : output_ids_) {
        const Tensor& t = p.tensor(id);
        std::vector<uint8_t> host(t.nbytes());
        e.to_host(host.data(), t.data, t.nbytes());
        out_.push_back(std::move(host));
      }
      e.synchronize();
      ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    } catch (const std::exception& ex) {
      SetError(ex.what());
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Program& p = *st_->program;
    Napi::Object res = Napi::Object::New(env);
    Napi::Object outs = Napi::Object::New(env);
    for (size_t i = 0; i < output_ids_.size(); ++i) {
      const Tensor& t = p.tensor(output_ids_[i]);
      Napi::TypedArray a = typed_array_for(env, t.dtype, t.numel());
      std::memcpy(typed_array_data(a), out_[i].data(), out_[i].size());
      outs.Set(p.spec(output_ids_[i]).name, a);
    }
    res.Set("outputs", outs);
    res.Set("ms", ms_);
    if (profile_) {
      Napi::Array prof = Napi::Array::New(env);
      uint32_t k = 0;
      for (const OpProfile& op : p.profile()) {
        if (!op.calls) continue;
        Napi::Object o = Napi::Object::New(env);
        o.Set("op", op.op);
        o.Set("calls", static_cast<double>(op.calls));
        o.Set("ms", op.ms);
        prof.Set(k++, o);
      }
      res.Set("profile", prof);
    }
    finish();
    deferred_.Resolve(res);
  }

  void OnError(const Napi::Error& err) override {
    finish();
    deferred_.Reject(err.Value());
  }

 private:
  void finish() {
    st_->running = false;
    st_->owner->running -= 1;
    if (st_->dispose_pending) st_->release();
  }

  Napi::Promise::Deferred deferred_;
  std::shared_ptr<ProgramState> st_;
  std::vector<std::pair<int, const void*>> inputs_;
  std::vector<Napi::ObjectReference> keep_;
  std::vector<int> output_ids_;
  std::vector<std::vector<uint8_t>> out_;
  bool profile_;
  double ms_ = 0;
};

}  // namespace

// run(inputs: Record<string, TypedArray>, options?: { profile?: boolean }) -> Promise<{ outputs, ms, profile? }>
Napi::Value ProgramWrap::Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MEDIC_NAPI_TRY
  Program& p = state->get("program.run()");
  if (state->running) throw Error("program.run(): the previous step has not finished; await it first");
  // Steps of one engine share its device stream, workspace and bound tensors: one at a time.
  if (state->owner->running)
    throw Error("program.run(): another program's step is running on this engine; await it first");
  Napi::Object given = info.Length() > 0 && info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
  bool profile = false;
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Value pv = info[1].As<Napi::Object>().Get("profile");
    profile = pv.IsBoolean() && pv.As<Napi::Boolean>().Value();
  }
  std::vector<std::pair<int, const void*>> inputs;
  std::vector<Napi::ObjectReference> keep;
  std::vector<int> outputs;
  for (int id = 0; id < p.buffer_count(); ++id) {
    const BufferSpec& b = p.spec(id);
    if (b.kind == BufferKind::Output) outputs.push_back(id);
    if (b.kind != BufferKind::Input) continue;
    std::string what = "program.run(): input '" + b.name + "' " + dtype_name(b.dtype) + b.shape.str();
    if (!given.Has(b.name)) throw Error(what + " was not given");
    Napi::Value v = given.Get(b.name);
    inputs.emplace_back(id, typed_array_bytes(v, b.dtype, b.shape.numel(), what));
    keep.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }
  Napi::Array keys = given.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    std::string k = keys.Get(i).ToString().Utf8Value();
    int id = p.find(k);
    if (id < 0 || p.spec(id).kind != BufferKind::Input)
      throw Error("program.run(): '" + k + "' is not an input of this program");
  }
  auto* w = new StepWorker(env, state, std::move(inputs), std::move(keep), std::move(outputs), profile);
  state->running = true;
  state->owner->running += 1;
  Napi::Promise promise = w->promise();
  w->Queue();
  return promise;
  MEDIC_NAPI_CATCH(env)
}

static int buffer_arg(Program& p, const Napi::CallbackInfo& info, const char* what) {
  if (info.Length() < 1 || !info[0].IsString()) throw Error(std::string(what) + ": expected a buffer name");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  int id = p.find(name);
  if (id < 0) throw Error(std::string(what) + ": no buffer named '" + name + "'");
  return id;
}

// read(name): a copy of any buffer (temps hold whatever the last step left there).
Napi::Value ProgramWrap::Read(const Napi::CallbackInfo& info) {
  MEDIC_NAPI_TRY
  Program& p = state->get("program.read()");
  if (state->owner->running) throw Error("program.read(): a program step is running on this engine; await it first");
  int id = buffer_arg(p, info, "program.read()");
  const Tensor& t = p.tensor(id);
  Napi::TypedArray out = typed_array_for(info.Env(), t.dtype, t.numel());
  state->owner->engine->to_host(typed_array_data(out), t.data, t.nbytes());
  return out;
  MEDIC_NAPI_CATCH(info.Env())
}

Napi::Value ProgramWrap::Write(const Napi::CallbackInfo& info) {
  MEDIC_NAPI_TRY
  Program& p = state->get("program.write()");
  if (state->owner->running) throw Error("program.write(): a program step is running on this engine; await it first");
  int id = buffer_arg(p, info, "program.write()");
  const Tensor& t = p.tensor(id);
  const void* src = typed_array_bytes(info[1], t.dtype, t.numel(), "program.write('" + p.spec(id).name + "')");
  state->owner->engine->to_device(t.data, src, t.nbytes());
  return info.Env().Undefined();
  MEDIC_NAPI_CATCH(info.Env())
}

Napi::Value ProgramWrap::Info(const Napi::CallbackInfo& info) {
  MEDIC_NAPI_TRY
  Program& p = state->get("program.info()");
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("arenaBytes", static_cast<double>(p.arena_bytes()));
  o.Set("naiveBytes", static_cast<double>(p.naive_bytes()));
  o.Set("ops", p.op_count());
  o.Set("buffers", p.buffer_count());
  return o;
  MEDIC_NAPI_CATCH(info.Env())
}

Napi::Value ProgramWrap::Dispose(const Napi::CallbackInfo& info) {
  MEDIC_NAPI_TRY
  state->release();
  return info.Env().Undefined();
  MEDIC_NAPI_CATCH(info.Env())
}

}  // namespace medic::napi
