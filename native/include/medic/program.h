// A Program: a static op list over named buffers, planned once and run once per step.
//
// The graph (built and differentiated in TypeScript) arrives as buffers + ops. Compilation resolves
// names, checks every op's contract, and plans memory: temporaries, inputs and outputs share one arena
// where buffers whose lifetimes (first to last op that touches them) do not overlap share bytes.
// Bound buffers (parameters, gradients, optimizer state) are engine tensors that outlive the program
// and may be shared between programs (a train step and an eval forward over the same weights).
// run() executes the op list with no allocation and no host round trip; only `output` buffers are
// copied back, which the N-API layer does after the step.
// On a CUDA engine the second and later runs replay a CUDA graph of the op list (medic/cuda_graph.h).
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "medic/engine.h"
#include "medic/ops.h"

namespace medic {

enum class BufferKind : uint8_t {
  Input,   // written from the host before each run
  Output,  // computed by ops, read back to the host after each run
  Temp,    // lives inside one run, shares the arena
  Bound,   // an engine tensor bound at compile time (persistent state)
  View,    // a reshaped window into another buffer: `of` at element `offset`
};
BufferKind buffer_kind_from_name(const std::string& s);

struct BufferSpec {
  std::string name;
  Shape shape;
  DType dtype = DType::F32;
  BufferKind kind = BufferKind::Temp;
  std::string of;      // View: the viewed buffer
  int64_t offset = 0;  // View: element offset into it
  Tensor bound;        // Bound: the tensor
};

struct OpSpec {
  std::string op;
  std::vector<std::string> in, out;  // "" marks an empty optional slot
  Attrs attrs;
};

struct CudaGraph;

struct OpProfile {
  std::string op;
  int64_t calls = 0;
  double ms = 0;
};

class Program {
 public:
  Program(Engine& engine, std::vector<BufferSpec> buffers, std::vector<OpSpec> ops);
  ~Program();
  Program(const Program&) = delete;
  Program& operator=(const Program&) = delete;

  void run(bool profile = false);

  int find(const std::string& name) const;  // -1 when unknown
  const Tensor& tensor(int id) const { return tensors_[id]; }
  const BufferSpec& spec(int id) const { return buffers_[id]; }
  int buffer_count() const { return static_cast<int>(buffers_.size()); }
  size_t arena_bytes() const { return arena_bytes_; }
  size_t naive_bytes() const { return naive_bytes_; }  // what the arena would be without sharing
  int op_count() const { return static_cast<int>(ops_.size()); }
  const std::vector<OpProfile>& profile() const { return profile_; }

 private:
  struct CompiledOp {
    const OpDef* def;
    std::vector<Tensor> in, out;
    Attrs attrs;
  };
  void plan();
  void run_ops();
  void run_cuda_graph();

  Engine& engine_;
  std::vector<BufferSpec> buffers_;
  std::vector<OpSpec> op_specs_;
  std::unordered_map<std::string, int> index_;
  std::vector<Tensor> tensors_;
  std::vector<CompiledOp> ops_;
  void* arena_ = nullptr;
  size_t arena_bytes_ = 0, naive_bytes_ = 0;
  std::vector<OpProfile> profile_;
  CudaGraph* graph_ = nullptr;  // CUDA only: the captured step, replayed by run()
  bool warmed_ = false;         // CUDA only: one uncaptured run happened (it sized the workspace)
};

}  // namespace medic
