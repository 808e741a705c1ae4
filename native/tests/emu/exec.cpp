// medic CUDA emulator, execution: the fibers that run a kernel's threads, the per-block scheduler,
// barriers and warp collectives (mma.sync and ldmatrix from the PTX tables). See cuda_emu.h for what
// the emulator checks and what it cannot; runtime.cpp holds the runtime API.
//
// Execution model: a launch runs at once on the calling thread (or, while its stream is captured, when
// the graph is launched). Blocks run one after another in grid order (reversed with
// MEDIC_EMU_ORDER=reverse). Inside a block every CUDA thread is a fiber with its own stack; a fiber
// runs until it reaches a barrier or warp collective, then the next one runs. Between two barriers the
// fibers run in thread order, reverse order or a seeded shuffle (MEDIC_EMU_ORDER).
//
// Faults reported with the kernel's name: a barrier or collective that not every thread reaches
// (deadlock), a collective by part of a warp, misaligned ldmatrix rows, and (runtime.cpp's guard,
// checked after every kernel) a write past the end of a device allocation.
#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "emu_internal.h"

extern "C" void medic_emu_switch(void** save_sp, void* load_sp);

#if defined(__x86_64__)
// Save the callee-saved registers on the current stack, store its pointer, switch to the other stack
// and restore its registers (System V ABI; the FP control words are never changed by kernels).
asm(R"(
  .text
  .globl medic_emu_switch
  .hidden medic_emu_switch
  .type medic_emu_switch,@function
medic_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size medic_emu_switch, .-medic_emu_switch
)");
#else
#error "medic CUDA emulator: the fiber switch is written for x86-64 only"
#endif

namespace medic_emu {
namespace detail {

namespace {
bool env_flag(const char* name) {
  const char* e = std::getenv(name);
  return e && std::strcmp(e, "1") == 0;
}
}  // namespace

// MEDIC_EMU_VERBOSE=1: graph captures and launches, large allocations and the peak of device memory
// (at exit) on stderr.
bool verbose() {
  static const bool v = env_flag("MEDIC_EMU_VERBOSE");
  return v;
}

// MEDIC_EMU_DRY_RUN=1: launches are checked (configuration, shared memory) but no block runs, so
// host code and launch shapes can be exercised at full ViT-B batch sizes in seconds.
bool dry_run() {
  static const bool v = env_flag("MEDIC_EMU_DRY_RUN");
  return v;
}

std::string dim_str(dim3 d) {
  return "(" + std::to_string(d.x) + "," + std::to_string(d.y) + "," + std::to_string(d.z) + ")";
}

}  // namespace detail

using namespace detail;

namespace {

constexpr size_t kStackBytes = 256 * 1024;
constexpr size_t kGuardBytes = 4096;

// ---- Fibers and the per-block scheduler ----------------------------------------------------------

struct Rendezvous {
  int expected = 0, arrived = 0;
  uint64_t gen = 0;
};

struct Warp {
  Rendezvous rv;
  int lanes = 0;
  alignas(16) unsigned char slot[32][64];
  const unsigned char* ptrs[32];
  const char* what = nullptr;  // the collective the first arriving lane called
  uint64_t cache_gen = ~0ull;  // mma: the tile is computed once per rendezvous
  float d[16][8];
};

// One queued cp.async (cuda_emu.h): lands at the wait_group that retires its group.
struct CpAsync {
  void* dst;
  const void* src;
  int bytes, src_bytes;
};

struct Fiber {
  std::vector<CpAsync> cp_open;                 // issued since the last commit_group
  std::vector<std::vector<CpAsync>> cp_groups;  // committed, oldest first
  void* sp = nullptr;
  ThreadCoords c{};
  int lane = 0, warp = 0;
  bool done = false;
  Rendezvous* wait = nullptr;
  uint64_t wait_gen = 0;
  const char* wait_what = nullptr;
};

enum class Order { Forward, Reverse, Shuffle };

Order order_from_env() {
  const char* v = std::getenv("MEDIC_EMU_ORDER");
  if (!v || !*v || std::strcmp(v, "forward") == 0) return Order::Forward;
  if (std::strcmp(v, "reverse") == 0) return Order::Reverse;
  if (std::strcmp(v, "shuffle") == 0) return Order::Shuffle;
  std::fprintf(stderr, "MEDIC_EMU_ORDER must be forward, reverse or shuffle, got '%s'\n", v);
  std::exit(2);
}

// MEDIC_EMU_STATS=1: per kernel, at exit, launches, blocks, and warp-level mma.sync / ldmatrix
// instructions: the tensor-core work a kernel issues, comparable before and after a change.
struct KernelStats {
  uint64_t launches = 0, blocks = 0, mma = 0, ldmatrix = 0;
};
bool stats_on() {
  static const bool v = env_flag("MEDIC_EMU_STATS");
  return v;
}
std::mutex g_stats_mu;
std::map<std::string, KernelStats>* g_stats = nullptr;  // never destroyed: printed at exit
thread_local KernelStats* t_counts = nullptr;           // the running launch's counters (stats on)

void add_stats(const std::string& name, const KernelStats& k) {
  std::lock_guard<std::mutex> g(g_stats_mu);
  if (!g_stats) {
    g_stats = new std::map<std::string, KernelStats>();
    std::atexit([] {
      std::lock_guard<std::mutex> lk(g_stats_mu);
      std::fprintf(stderr,
                   "medic emulator stats: kernel, launches, blocks, mma.sync and ldmatrix (warp instructions)\n");
      for (auto& [n, c] : *g_stats)
        std::fprintf(stderr, "  %-40s %8llu %10llu %14llu %14llu\n", n.c_str(), (unsigned long long)c.launches,
                     (unsigned long long)c.blocks, (unsigned long long)c.mma, (unsigned long long)c.ldmatrix);
    });
  }
  KernelStats& s = (*g_stats)[name];
  s.launches += k.launches;
  s.blocks += k.blocks;
  s.mma += k.mma;
  s.ldmatrix += k.ldmatrix;
}

struct Block {
  const Launch* launch = nullptr;
  std::vector<Fiber> fibers;
  std::vector<Warp> warps;
  Rendezvous bar;
  unsigned char* smem = nullptr;
  void* sched_sp = nullptr;
  Fiber* cur = nullptr;
  std::exception_ptr error;
  std::vector<void*> shared_filled;  // static __shared__ variables already poisoned in this block
};

// Stacks of up to 1024 fibers, reserved once per OS thread (pages are touched only when used).
struct StackPool {
  unsigned char* base = nullptr;
  StackPool() {
    size_t bytes = static_cast<size_t>(kMaxThreads) * (kStackBytes + kGuardBytes);
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
      std::perror("medic emulator: mmap of fiber stacks");
      std::abort();
    }
    base = static_cast<unsigned char*>(p);
    for (int i = 0; i < kMaxThreads; ++i) mprotect(base + i * (kStackBytes + kGuardBytes), kGuardBytes, PROT_NONE);
  }
  unsigned char* top(int i) const { return base + (i + 1) * (kStackBytes + kGuardBytes); }
};

thread_local Block* t_block = nullptr;
thread_local StackPool* t_stacks = nullptr;

Fiber& me() {
  if (!t_block || !t_block->cur) {
    std::fprintf(stderr, "medic emulator: a device function ran outside a kernel\n");
    std::abort();
  }
  return *t_block->cur;
}

void yield_to_scheduler() {
  Fiber& f = me();
  medic_emu_switch(&f.sp, t_block->sched_sp);
}

[[noreturn]] void fiber_entry() {
  Block* b = t_block;
  try {
    b->launch->body();
  } catch (...) {
    if (!b->error) b->error = std::current_exception();
  }
  b->cur->done = true;
  medic_emu_switch(&b->cur->sp, b->sched_sp);
  std::abort();  // a finished fiber is never resumed
}

void* initial_sp(unsigned char* top) {
  auto* sp = reinterpret_cast<void**>(reinterpret_cast<uintptr_t>(top) & ~uintptr_t(15));
  *--sp = nullptr;                                // fiber_entry's (never used) return address
  *--sp = reinterpret_cast<void*>(&fiber_entry);  // where medic_emu_switch's ret goes
  for (int i = 0; i < 6; ++i) *--sp = nullptr;    // rbp rbx r12 r13 r14 r15
  return sp;
}

void arrive(Rendezvous& r, const char* what) {
  if (++r.arrived == r.expected) {
    r.arrived = 0;
    ++r.gen;
    return;
  }
  Fiber& f = me();
  f.wait = &r;
  f.wait_gen = r.gen;
  f.wait_what = what;
  yield_to_scheduler();
  f.wait = nullptr;
}

std::string deadlock_report(const Block& b) {
  std::map<std::string, int> waiting;
  int done = 0;
  for (const Fiber& f : b.fibers) {
    if (f.done)
      ++done;
    else if (f.wait)
      ++waiting[f.wait_what ? f.wait_what : "?"];
  }
  std::string s =
      "deadlock in block " + dim_str(dim3(b.fibers[0].c.bid.x, b.fibers[0].c.bid.y, b.fibers[0].c.bid.z)) + ": ";
  for (auto& [what, n] : waiting) s += std::to_string(n) + " threads wait in " + what + ", ";
  s += std::to_string(done) + " threads have returned (a barrier or warp collective that not every thread reaches)";
  return s;
}

std::vector<int> run_order(int n, Order o, std::mt19937& rng) {
  std::vector<int> v(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) v[i] = i;
  if (o == Order::Reverse) std::reverse(v.begin(), v.end());
  if (o == Order::Shuffle) std::shuffle(v.begin(), v.end(), rng);
  return v;
}

void run_block(Block& b, uint3 bid, std::mt19937& rng, Order order) {
  const Launch& l = *b.launch;
  const int nt = static_cast<int>(l.block.x * l.block.y * l.block.z);
  for (int i = 0; i < nt; ++i) {
    Fiber& f = b.fibers[i];
    f = Fiber{};
    f.c.tid = uint3{static_cast<unsigned>(i % l.block.x), static_cast<unsigned>((i / l.block.x) % l.block.y),
                    static_cast<unsigned>(i / (l.block.x * l.block.y))};
    f.c.bid = bid;
    f.c.bdim = l.block;
    f.c.gdim = l.grid;
    f.lane = i % 32;
    f.warp = i / 32;
    f.sp = initial_sp(t_stacks->top(i));
  }
  b.bar = Rendezvous{};
  b.bar.expected = nt;
  for (size_t w = 0; w < b.warps.size(); ++w) {
    b.warps[w].rv = Rendezvous{};
    b.warps[w].lanes = std::min(32, nt - static_cast<int>(w) * 32);
    b.warps[w].rv.expected = b.warps[w].lanes;
    b.warps[w].cache_gen = ~0ull;
  }
  if (l.smem) std::memset(b.smem, 0xFF, l.smem);  // uninitialised shared memory reads as NaN
  b.shared_filled.clear();                        // and static __shared__ variables at first use

  int alive = nt;
  while (alive > 0) {
    bool progress = false;
    for (int i : run_order(nt, order, rng)) {
      Fiber& f = b.fibers[i];
      if (f.done || (f.wait && f.wait->gen == f.wait_gen)) continue;
      b.cur = &f;
      medic_emu_switch(&b.sched_sp, f.sp);
      b.cur = nullptr;
      progress = true;
      if (f.done) --alive;
      if (b.error) std::rethrow_exception(b.error);
    }
    if (!progress) throw std::runtime_error(deadlock_report(b));
  }
}

}  // namespace

void detail::execute(const Launch& l) {
  if (dry_run()) return;
  if (!t_stacks) t_stacks = new StackPool();  // one per OS thread, kept for the process
  static const Order order = order_from_env();
  std::mt19937 rng(12345);
  const int nt = static_cast<int>(l.block.x * l.block.y * l.block.z);
  Block b;
  b.launch = &l;
  b.fibers.resize(static_cast<size_t>(nt));
  b.warps.resize(static_cast<size_t>((nt + 31) / 32));
  std::vector<unsigned char> smem(l.smem + 16);
  b.smem = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smem.data()) + 15) & ~uintptr_t(15));
  Block* saved = t_block;
  t_block = &b;
  KernelStats counts;
  counts.launches = 1;
  if (stats_on()) t_counts = &counts;
  try {
    const uint64_t nb = static_cast<uint64_t>(l.grid.x) * l.grid.y * l.grid.z;
    counts.blocks = nb;
    for (uint64_t k = 0; k < nb; ++k) {
      uint64_t i = order == Order::Reverse ? nb - 1 - k : k;
      uint3 bid{static_cast<unsigned>(i % l.grid.x), static_cast<unsigned>((i / l.grid.x) % l.grid.y),
                static_cast<unsigned>(i / (static_cast<uint64_t>(l.grid.x) * l.grid.y))};
      run_block(b, bid, rng, order);
    }
  } catch (const std::exception& e) {
    t_block = saved;
    t_counts = nullptr;
    throw std::runtime_error(std::string("kernel ") + l.name + " " + dim_str(l.grid) + "x" + dim_str(l.block) + ": " +
                             e.what());
  }
  t_block = saved;
  t_counts = nullptr;
  if (stats_on()) add_stats(l.name, counts);
  std::string rz = check_redzones();
  if (!rz.empty()) throw std::runtime_error(std::string("kernel ") + l.name + ": " + rz);
}

// ---- Public emulator entry points (cuda_emu.h) ---------------------------------------------------

const ThreadCoords& coords() { return me().c; }

int lane_id() { return me().lane; }

void syncthreads() { arrive(t_block->bar, "__syncthreads"); }

namespace {
// A warp rendezvous around `pick`; returns the warp so callers can share a per-rendezvous result.
template <class F>
void collective(const void* in, size_t bytes, const char* what, F&& pick) {
  Fiber& f = me();
  Warp& w = t_block->warps[f.warp];
  if (bytes) std::memcpy(w.slot[f.lane], in, bytes);
  w.ptrs[f.lane] = w.slot[f.lane];
  if (w.rv.arrived == 0)
    w.what = what;
  else if (w.what != what && std::strcmp(w.what, what) != 0)
    throw std::runtime_error(std::string("lanes of one warp in different collectives: ") + w.what + " and " + what);
  arrive(w.rv, what);
  pick(w);
  arrive(w.rv, what);
}
}  // namespace

void warp_exchange(const void* in, size_t bytes, const std::function<void(const unsigned char* const*, int)>& pick,
                   const char* what) {
  if (bytes > 64) throw std::runtime_error("emulator: warp exchange of more than 64 bytes");
  collective(in, bytes, what, [&](Warp& w) { pick(w.ptrs, w.lanes); });
}

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, per the PTX ISA's "Matrix Fragments for
// mma.m16n8k16 with floating point type" (groupID = lane >> 2, threadID_in_group = lane % 4):
//   A (8 .bf16 a_i, two per .b32 register, a_0 in the low half of register 0):
//     row = groupID for i in {0,1,4,5}, groupID + 8 otherwise;
//     col = threadID_in_group * 2 + (i & 1), + 8 for i >= 4
//   B (4 .bf16 b_i): row = threadID_in_group * 2 + (i & 1), + 8 for i >= 2; col = groupID
//   C, D (4 .f32 c_i): row = groupID for i < 2, groupID + 8 otherwise; col = threadID_in_group * 2 + (i & 1)
void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  struct In {
    uint32_t a[4], b[2];
    float c[4];
  } in{{a[0], a[1], a[2], a[3]}, {b0, b1}, {d[0], d[1], d[2], d[3]}};
  const int lane = me().lane;
  auto half = [](uint32_t reg, int i) {
    __nv_bfloat16 h;
    h.__x = static_cast<uint16_t>((i & 1) ? reg >> 16 : reg & 0xffffu);
    return static_cast<double>(__bfloat162float(h));
  };
  collective(&in, sizeof in, "mma.sync.m16n8k16", [&](Warp& w) {
    if (w.lanes != 32) throw std::runtime_error("mma.sync in a warp of fewer than 32 threads");
    if (w.cache_gen != w.rv.gen) {
      double A[16][16], B[16][8], C[16][8];
      for (int l = 0; l < 32; ++l) {
        const In& x = *reinterpret_cast<const In*>(w.slot[l]);
        const int g = l >> 2, t = l & 3;
        for (int i = 0; i < 8; ++i) {
          int row = (i < 2 || (i >= 4 && i < 6)) ? g : g + 8;
          int col = t * 2 + (i & 1) + (i >= 4 ? 8 : 0);
          A[row][col] = half(x.a[i / 2], i);
        }
        for (int i = 0; i < 4; ++i) {
          int row = t * 2 + (i & 1) + (i >= 2 ? 8 : 0);
          B[row][g] = half(x.b[i / 2], i);
        }
        for (int i = 0; i < 4; ++i) C[i < 2 ? g : g + 8][t * 2 + (i & 1)] = x.c[i];
      }
      for (int m = 0; m < 16; ++m)
        for (int n = 0; n < 8; ++n) {
          double s = 0;
          for (int k = 0; k < 16; ++k) s += A[m][k] * B[k][n];
          w.d[m][n] = static_cast<float>(s + C[m][n]);
        }
      w.cache_gen = w.rv.gen;
      if (t_counts) ++t_counts->mma;
    }
    const int g = lane >> 2, t = lane & 3;
    for (int i = 0; i < 4; ++i) d[i] = w.d[i < 2 ? g : g + 8][t * 2 + (i & 1)];
  });
}

// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16 (PTX ISA, "Warp-level matrix load instruction"):
// lanes 8j..8j+7 give the addresses of rows 0..7 of matrix j (16 bytes each, 16-byte aligned);
// register j of lane l receives row l / 4, elements 2 (l % 4) and 2 (l % 4) + 1 of matrix j, or with
// .trans column l / 4, rows 2 (l % 4) and 2 (l % 4) + 1 (the first element in the low half).
void ldmatrix_x4(uint32_t (&r)[4], const void* row_addr, bool trans) {
  if (reinterpret_cast<uintptr_t>(row_addr) & 15) throw std::runtime_error("ldmatrix row address not 16-byte aligned");
  const int lane = me().lane;
  collective(&row_addr, sizeof row_addr, trans ? "ldmatrix.x4.trans" : "ldmatrix.x4", [&](Warp& w) {
    if (w.lanes != 32) throw std::runtime_error("ldmatrix in a warp of fewer than 32 threads");
    if (t_counts && lane == 0) ++t_counts->ldmatrix;
    auto row = [&](int j, int i) {
      const uint16_t* p;
      std::memcpy(&p, w.slot[8 * j + i], sizeof p);
      return p;
    };
    for (int j = 0; j < 4; ++j) {
      uint16_t lo, hi;
      if (!trans) {
        lo = row(j, lane / 4)[2 * (lane % 4)];
        hi = row(j, lane / 4)[2 * (lane % 4) + 1];
      } else {
        lo = row(j, 2 * (lane % 4))[lane / 4];
        hi = row(j, 2 * (lane % 4) + 1)[lane / 4];
      }
      r[j] = static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
    }
  });
}

void cp_async(void* dst, const void* src, int bytes, int src_bytes) {
  if (bytes != 4 && bytes != 8 && bytes != 16) throw std::runtime_error("cp.async copies 4, 8 or 16 bytes");
  if (src_bytes < 0 || src_bytes > bytes) throw std::runtime_error("cp.async src-size outside [0, cp-size]");
  const uintptr_t m = static_cast<uintptr_t>(bytes) - 1;
  if ((reinterpret_cast<uintptr_t>(dst) & m) || (reinterpret_cast<uintptr_t>(src) & m))
    throw std::runtime_error("cp.async address not aligned to the copy size (" + std::to_string(bytes) + " bytes)");
  me().cp_open.push_back({dst, src, bytes, src_bytes});
}

void cp_async_commit() {
  Fiber& f = me();
  f.cp_groups.push_back(std::move(f.cp_open));
  f.cp_open.clear();
}

void cp_async_wait(int pending) {
  Fiber& f = me();
  while (static_cast<int>(f.cp_groups.size()) > pending) {
    for (const CpAsync& c : f.cp_groups.front()) {
      if (c.src_bytes) std::memcpy(c.dst, c.src, static_cast<size_t>(c.src_bytes));
      std::memset(static_cast<unsigned char*>(c.dst) + c.src_bytes, 0, static_cast<size_t>(c.bytes - c.src_bytes));
    }
    f.cp_groups.erase(f.cp_groups.begin());
  }
}

unsigned char* dynamic_smem() { return t_block->smem; }

void check_launch_bounds(long long max_threads) {
  const dim3 b = me().c.bdim;
  const long long n = static_cast<long long>(b.x) * b.y * b.z;
  if (n > max_threads)
    throw std::runtime_error("too many resources requested for launch: " + std::to_string(n) +
                             " threads per block, __launch_bounds__(" + std::to_string(max_threads) + ")");
}

void shared_declared(void* p, size_t bytes) {
  auto& filled = t_block->shared_filled;
  if (std::find(filled.begin(), filled.end(), p) != filled.end()) return;
  filled.push_back(p);
  std::memset(p, 0xFF, bytes);
}

}  // namespace medic_emu
