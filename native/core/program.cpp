#include "medic/program.h"

#include "medic/cuda_graph.h"

#include <algorithm>
#include <chrono>
#include <map>

namespace medic {

BufferKind buffer_kind_from_name(const std::string& s) {
  if (s == "input") return BufferKind::Input;
  if (s == "output") return BufferKind::Output;
  if (s == "temp") return BufferKind::Temp;
  if (s == "bound") return BufferKind::Bound;
  if (s == "view") return BufferKind::View;
  throw Error("unknown buffer kind '" + s + "': expected input, output, temp, bound or view");
}

namespace {
constexpr size_t kAlign = 256;
size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
}  // namespace

Program::Program(Engine& engine, std::vector<BufferSpec> buffers, std::vector<OpSpec> ops)
    : engine_(engine), buffers_(std::move(buffers)), op_specs_(std::move(ops)) {
  for (int i = 0; i < buffer_count(); ++i) {
    const std::string& name = buffers_[i].name;
    if (name.empty()) throw Error("program: buffer " + std::to_string(i) + " has no name");
    if (!index_.emplace(name, i).second) throw Error("program: buffer '" + name + "' is declared twice");
  }
  plan();
  engine_.count_program(1);
}

Program::~Program() {
  if (graph_) {
    try {
      engine_.synchronize();  // a replay may still be in flight
    } catch (...) {
    }
    cuda_graph_destroy(graph_);
  }
  if (arena_) engine_.release(arena_, arena_bytes_);
  engine_.count_program(-1);
}

int Program::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? -1 : it->second;
}

void Program::plan() {
  const int nb = buffer_count();
  const int nops = static_cast<int>(op_specs_.size());

  // Resolve views to their root buffer (views of views allowed, no cycles).
  std::vector<int> root(nb, -1);
  std::vector<int64_t> root_offset(nb, 0);
  for (int i = 0; i < nb; ++i) {
    int cur = i, hops = 0;
    int64_t off = 0;
    while (buffers_[cur].kind == BufferKind::View) {
      const BufferSpec& v = buffers_[cur];
      int base = find(v.of);
      if (base < 0) throw Error("program: view '" + v.name + "' is of unknown buffer '" + v.of + "'");
      if (buffers_[base].dtype != v.dtype)
        throw Error("program: view '" + v.name + "' is " + dtype_name(v.dtype) + " but '" + v.of + "' is " +
                    dtype_name(buffers_[base].dtype));
      off += v.offset;
      cur = base;
      if (++hops > nb) throw Error("program: view '" + buffers_[i].name + "' is part of a cycle of views");
    }
    root[i] = cur;
    root_offset[i] = off;
  }
  for (int i = 0; i < nb; ++i) {
    const BufferSpec& b = buffers_[i];
    int64_t root_numel =
        buffers_[root[i]].kind == BufferKind::Bound ? buffers_[root[i]].bound.numel() : buffers_[root[i]].shape.numel();
    if (root_offset[i] < 0 || root_offset[i] + b.shape.numel() > root_numel)
      throw Error("program: buffer '" + b.name + "' " + b.shape.str() + " at offset " + std::to_string(root_offset[i]) +
                  " does not fit in '" + buffers_[root[i]].name + "' (" + std::to_string(root_numel) + " elements)");
    if (b.kind == BufferKind::Bound) {
      if (!b.bound.data && b.bound.numel()) throw Error("program: bound buffer '" + b.name + "' has no tensor");
      if (b.bound.dtype != b.dtype || b.bound.numel() != b.shape.numel())
        throw Error("program: bound buffer '" + b.name + "' is declared " + dtype_name(b.dtype) + b.shape.str() +
                    " but its tensor is " + b.bound.describe());
      if (b.bound.device != engine_.device())
        throw Error("program: bound buffer '" + b.name + "' is on another device");
    }
  }

  // Resolve op slots and compute each arena buffer's lifetime [first, last] in op indices.
  // Also the first op that reads and the first that writes each root, to catch an arena buffer that
  // is read before anything wrote it.
  const int kNever = -2;
  std::vector<int> first(nb, kNever), last(nb, kNever), first_read(nb, kNever), first_write(nb, kNever);
  auto touch = [&](int buf, int op, bool write) {
    int r = root[buf];
    if (first[r] == kNever) first[r] = op;
    last[r] = std::max(last[r], op);
    int& f = write ? first_write[r] : first_read[r];
    if (f == kNever) f = op;
  };
  std::vector<std::vector<int>> op_in(nops), op_out(nops);
  for (int k = 0; k < nops; ++k) {
    const OpSpec& s = op_specs_[k];
    const OpDef* def = find_op(s.op);
    if (!def) throw Error("program: op " + std::to_string(k) + " is unknown op '" + s.op + "'");
    auto resolve = [&](const std::vector<std::string>& names, std::vector<int>& ids, bool write) {
      const char* what = write ? "writes" : "reads";
      for (const std::string& n : names) {
        if (n.empty()) {
          ids.push_back(-1);
          continue;
        }
        int id = find(n);
        if (id < 0)
          throw Error("program: op " + std::to_string(k) + " (" + s.op + ") " + what + " unknown buffer '" + n + "'");
        ids.push_back(id);
        touch(id, k, write);
      }
    };
    resolve(s.in, op_in[k], false);
    resolve(s.out, op_out[k], true);
  }
  for (int i = 0; i < nb; ++i) {
    if (root[i] != i) continue;
    BufferKind kind = buffers_[i].kind;
    // An arena buffer shares its bytes with buffers that died before its first write: reading it
    // earlier (or in the op that first writes it) would read their leftovers.
    if ((kind == BufferKind::Temp || kind == BufferKind::Output) && first_read[i] != kNever &&
        (first_write[i] == kNever || first_read[i] <= first_write[i]))
      throw Error("program: op " + std::to_string(first_read[i]) + " (" + op_specs_[first_read[i]].op + ") reads " +
                  (kind == BufferKind::Temp ? "temp '" : "output '") + buffers_[i].name + "' before any op writes it");
    if (first[i] == kNever) first[i] = last[i] = -1;  // declared but unused: still gets bytes
    if (kind == BufferKind::Input) first[i] = -1;     // written by the host before op 0
    if (kind == BufferKind::Output) last[i] = nops;   // read by the host after the last op (even if unused)
  }

  // Place arena buffers: largest first, each at the lowest offset that overlaps no placed buffer
  // whose lifetime overlaps its own.
  struct Slot {
    int id;
    size_t bytes, offset;
  };
  std::vector<Slot> slots;
  for (int i = 0; i < nb; ++i) {
    BufferKind k = buffers_[i].kind;
    if (root[i] != i || k == BufferKind::Bound) continue;
    size_t bytes = align_up(std::max<size_t>(1, buffers_[i].shape.numel() * dtype_size(buffers_[i].dtype)));
    slots.push_back({i, bytes, 0});
    naive_bytes_ += bytes;
  }
  std::sort(slots.begin(), slots.end(),
            [](const Slot& a, const Slot& b) { return a.bytes != b.bytes ? a.bytes > b.bytes : a.id < b.id; });
  std::vector<const Slot*> placed;
  size_t total = 0;
  for (Slot& s : slots) {
    std::vector<std::pair<size_t, size_t>> busy;
    for (const Slot* p : placed)
      if (!(last[p->id] < first[s.id] || last[s.id] < first[p->id])) busy.emplace_back(p->offset, p->offset + p->bytes);
    std::sort(busy.begin(), busy.end());
    size_t off = 0;
    for (auto& iv : busy) {
      if (off + s.bytes <= iv.first) break;
      off = std::max(off, iv.second);
    }
    s.offset = off;
    total = std::max(total, off + s.bytes);
    placed.push_back(&s);
  }
  arena_bytes_ = total;
  if (arena_bytes_) arena_ = engine_.alloc(arena_bytes_);
  std::map<int, size_t> offset_of;
  for (const Slot& s : slots) offset_of[s.id] = s.offset;

  tensors_.resize(nb);
  for (int i = 0; i < nb; ++i) {
    const BufferSpec& b = buffers_[i];
    const BufferSpec& r = buffers_[root[i]];
    char* base = r.kind == BufferKind::Bound ? static_cast<char*>(r.bound.data)
                                             : static_cast<char*>(arena_) + offset_of[root[i]];
    Tensor& t = tensors_[i];
    t.data = base + root_offset[i] * static_cast<int64_t>(dtype_size(b.dtype));
    t.dtype = b.dtype;
    t.device = engine_.device();
    t.shape = b.shape;
  }

  // Compile ops: bind tensors and check every contract now, so run() never throws on shapes.
  ops_.resize(nops);
  for (int k = 0; k < nops; ++k) {
    CompiledOp& op = ops_[k];
    op.def = find_op(op_specs_[k].op);
    op.attrs = op_specs_[k].attrs;
    for (int id : op_in[k]) op.in.push_back(id < 0 ? Tensor{} : tensors_[id]);
    for (int id : op_out[k]) op.out.push_back(id < 0 ? Tensor{} : tensors_[id]);
    OpCall call{
        op.def,    op.in.data(),      static_cast<int>(op.in.size()), op.out.data(), static_cast<int>(op.out.size()),
        &op.attrs, &engine_.context()};
    try {
      check_call(call);
    } catch (const Error& e) {
      throw Error("program: op " + std::to_string(k) + ": " + e.what());
    }
    if (engine_.device() == Device::CUDA && !op.def->cuda)
      throw Error("program: op " + std::to_string(k) + " (" + op.def->name + ") has no CUDA kernel in this build");
  }
  // A started all-reduce must be completed within the step (ops.h): never left in flight past run().
  int open_allreduce = -1;
  for (int k = 0; k < nops; ++k) {
    if (ops_[k].def->id == OpId::allreduce && open_allreduce < 0) open_allreduce = k;
    if (ops_[k].def->id == OpId::allreduce_wait) open_allreduce = -1;
  }
  if (open_allreduce >= 0)
    throw Error("program: op " + std::to_string(open_allreduce) + " (allreduce) has no allreduce_wait after it");
}

void Program::run(bool profile) {
  if (!profile) {
    if (engine_.device() == Device::CUDA && cuda_graph_enabled())
      run_cuda_graph();
    else
      run_ops();
    return;
  }
  // Profiled runs go op by op with a synchronisation after each (never captured).
  if (profile_.empty()) {
    for (int i = 0; i < static_cast<int>(OpId::count); ++i)
      profile_.push_back({op_def(static_cast<OpId>(i)).name, 0, 0});
  }
  for (CompiledOp& op : ops_) {
    OpCall call{
        op.def,    op.in.data(),      static_cast<int>(op.in.size()), op.out.data(), static_cast<int>(op.out.size()),
        &op.attrs, &engine_.context()};
    auto t0 = std::chrono::steady_clock::now();
    run_op(call, false);
    engine_.synchronize();
    auto t1 = std::chrono::steady_clock::now();
    OpProfile& p = profile_[static_cast<int>(op.def->id)];
    p.calls += 1;
    p.ms += std::chrono::duration<double, std::milli>(t1 - t0).count();
  }
  warmed_ = true;
}

void Program::run_ops() {
  for (CompiledOp& op : ops_) {
    OpCall call{
        op.def,    op.in.data(),      static_cast<int>(op.in.size()), op.out.data(), static_cast<int>(op.out.size()),
        &op.attrs, &engine_.context()};
    run_op(call, false);
  }
}

// First run: op by op (kernels size the shared workspace, which must not grow during capture).
// Second run: capture the op list into a graph, then launch it (capturing executes nothing).
// Later runs: launch the graph. Another program growing the workspace makes the graph stale: capture again.
void Program::run_cuda_graph() {
  Context& ctx = engine_.context();
  if (graph_ && cuda_graph_stale(graph_, ctx)) {
    engine_.synchronize();
    cuda_graph_destroy(graph_);
    graph_ = nullptr;
  }
  if (!graph_) {
    if (!warmed_) {
      run_ops();
      warmed_ = true;
      return;
    }
    cuda_graph_begin(ctx);
    try {
      run_ops();
    } catch (...) {
      cuda_graph_abort(ctx);
      throw;
    }
    graph_ = cuda_graph_end(ctx);
  }
  cuda_graph_launch(graph_, ctx);
}

}  // namespace medic
