// medic CUDA emulator: the fiber scheduler that runs kernels, the warp collectives, and the runtime
// API (memory, streams, graph capture, events). See cuda_emu.h for what it checks and what it cannot.
//
// Execution model: a launch runs at once on the calling thread (or is recorded while its stream is
// being captured, and runs when the graph is launched). Blocks run one after another in grid order
// (reversed with MEDIC_EMU_ORDER=reverse). Inside a block every CUDA thread is a fiber with its own
// stack; a fiber runs until it reaches a barrier or warp collective, then the next one runs. Between
// two barriers the fibers run in thread order, reverse order or a seeded shuffle (MEDIC_EMU_ORDER).
//
// Checks a GPU would also fail (reported with the kernel's name): launch limits (1024 threads, grid
// y/z <= 65535, dynamic shared memory > 48 KiB without cudaFuncSetAttribute), a barrier that not all
// threads reach (deadlock), a collective with part of a warp, misaligned ldmatrix rows, and writes
// just past the end of a device allocation (a 256-byte guard checked after every kernel).
// Checks of this project's own rules: no allocation, synchronisation or synchronous copy while a
// stream is captured.
#include "cuda_emu.h"

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <vector>

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
namespace {

constexpr size_t kStackBytes = 256 * 1024;
constexpr size_t kGuardBytes = 4096;
constexpr int kMaxThreads = 1024;
constexpr size_t kDefaultSmem = 48 * 1024;
constexpr size_t kOptinSmem = 227 * 1024;  // sharedMemPerBlockOptin of an H100/H200
constexpr int kSmCount = 132;              // as an H100/H200, so shape-dependent plans (split-K) match
#if defined(__SANITIZE_ADDRESS__)
constexpr size_t kRedzone = 0;  // AddressSanitizer guards every allocation itself, reads included
#else
constexpr size_t kRedzone = 256;
#endif
constexpr unsigned char kRedzoneByte = 0xA5;

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

struct Fiber {
  void* sp = nullptr;
  unsigned char* stack = nullptr;
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

bool env_flag(const char* name) {
  const char* e = std::getenv(name);
  return e && std::strcmp(e, "1") == 0;
}

// MEDIC_EMU_VERBOSE=1: graph captures and launches, large allocations and the peak of device memory
// (at exit) on stderr.
bool verbose() {
  static const bool v = env_flag("MEDIC_EMU_VERBOSE");
  return v;
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
      std::fprintf(stderr, "medic emulator stats: kernel, launches, blocks, mma.sync and ldmatrix (warp instructions)\n");
      for (auto& [n, c] : *g_stats)
        std::fprintf(stderr, "  %-40s %8llu %10llu %14llu %14llu\n", n.c_str(), (unsigned long long)c.launches, (unsigned long long)c.blocks,
                     (unsigned long long)c.mma, (unsigned long long)c.ldmatrix);
    });
  }
  KernelStats& s = (*g_stats)[name];
  s.launches += k.launches;
  s.blocks += k.blocks;
  s.mma += k.mma;
  s.ldmatrix += k.ldmatrix;
}

// MEDIC_EMU_DRY_RUN=1: launches are checked (configuration, shared memory) but no block runs, so
// host code and launch shapes can be exercised at full ViT-B batch sizes in seconds.
bool dry_run() {
  static const bool v = env_flag("MEDIC_EMU_DRY_RUN");
  return v;
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
  *--sp = nullptr;                               // fiber_entry's (never used) return address
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

std::string dim_str(dim3 d) { return "(" + std::to_string(d.x) + "," + std::to_string(d.y) + "," + std::to_string(d.z) + ")"; }

std::string deadlock_report(const Block& b) {
  std::map<std::string, int> waiting;
  int done = 0;
  for (const Fiber& f : b.fibers) {
    if (f.done)
      ++done;
    else if (f.wait)
      ++waiting[f.wait_what ? f.wait_what : "?"];
  }
  std::string s = "deadlock in block " + dim_str(dim3(b.fibers[0].c.bid.x, b.fibers[0].c.bid.y, b.fibers[0].c.bid.z)) + ": ";
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

// ---- Device memory with a guard after every allocation -------------------------------------------

struct Alloc {
  size_t bytes;
  bool pinned;
  size_t mapped;  // > 0: an mmap'd reservation of this many bytes (dry runs), else aligned_alloc
};
std::mutex g_mem_mu;
std::map<uintptr_t, Alloc>& allocs() {
  static auto* m = new std::map<uintptr_t, Alloc>();  // never destroyed: engines free memory at exit
  return *m;
}

size_t g_live_bytes = 0, g_peak_bytes = 0;

void* mem_alloc(size_t bytes, bool pinned) {
  // Without our guard (AddressSanitizer builds) the allocation ends exactly at `bytes`.
  size_t padded = kRedzone ? (bytes + kRedzone + 255) / 256 * 256 : std::max<size_t>(bytes, 1);
  // A dry run reserves address space only, so full-size programs fit on a small machine.
  size_t mapped = dry_run() ? padded : 0;
  void* p = nullptr;
  if (mapped) {
    p = mmap(nullptr, padded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) p = nullptr;
  } else if (posix_memalign(&p, 256, padded) != 0) {
    p = nullptr;
  }
  if (!p) return nullptr;
  if (!dry_run()) std::memset(p, 0xCD, bytes);  // fresh device memory is not zero (a dry run leaves pages untouched)
  std::memset(static_cast<unsigned char*>(p) + bytes, kRedzoneByte, padded - bytes);
  std::lock_guard<std::mutex> g(g_mem_mu);
  allocs()[reinterpret_cast<uintptr_t>(p)] = Alloc{bytes, pinned, mapped};
  if (!pinned) {
    g_live_bytes += bytes;
    g_peak_bytes = std::max(g_peak_bytes, g_live_bytes);
  }
  if (verbose() && bytes >= (size_t(256) << 20)) {
    static bool hooked = false;
    if (!hooked) {
      hooked = true;
      std::atexit([] { std::fprintf(stderr, "medic emulator: peak device memory %.2f GiB\n", g_peak_bytes / 1073741824.0); });
    }
    std::fprintf(stderr, "medic emulator: cudaMalloc %.2f GiB (live %.2f GiB)\n", bytes / 1073741824.0, g_live_bytes / 1073741824.0);
  }
  return p;
}

bool redzone_intact(uintptr_t p, const Alloc& a) {
  const unsigned char* z = reinterpret_cast<const unsigned char*>(p) + a.bytes;
  for (size_t i = 0; i < kRedzone; ++i)
    if (z[i] != kRedzoneByte) return false;
  return true;
}

// Which live allocation holds [p, p + n)? 0 if none.
uintptr_t find_alloc(const void* p, size_t n, bool* pinned = nullptr) {
  std::lock_guard<std::mutex> g(g_mem_mu);
  auto& m = allocs();
  uintptr_t u = reinterpret_cast<uintptr_t>(p);
  auto it = m.upper_bound(u);
  if (it == m.begin()) return 0;
  --it;
  if (u + n > it->first + it->second.bytes) return 0;
  if (pinned) *pinned = it->second.pinned;
  return it->first;
}

std::string check_redzones() {
  std::lock_guard<std::mutex> g(g_mem_mu);
  for (auto& [p, a] : allocs())
    if (!redzone_intact(p, a)) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "write past the end of a %zu-byte device allocation", a.bytes);
      return buf;
    }
  return "";
}

// ---- Errors, streams, capture --------------------------------------------------------------------

thread_local cudaError_t t_last = cudaSuccess;
thread_local std::string t_detail;

cudaError_t fail(cudaError_t e, const std::string& detail) {
  t_last = e;
  t_detail = detail;
  return e;
}

using Op = std::function<void()>;

std::mutex g_capture_mu;
int g_capturing = 0;  // streams now capturing (global capture mode)

}  // namespace
}  // namespace medic_emu

struct CUstream_st {
  bool capturing = false;
  bool invalidated = false;
  std::vector<medic_emu::Op> ops;
};
struct CUgraph_st {
  std::vector<medic_emu::Op> ops;
};
struct CUgraphExec_st {
  std::vector<medic_emu::Op> ops;
};
struct CUevent_st {
  std::chrono::steady_clock::time_point t;
};

namespace medic_emu {
namespace {

CUstream_st g_default_stream;
CUstream_st* stream_of(cudaStream_t s) { return s ? s : &g_default_stream; }

// A call that is not allowed while any stream captures (cudaStreamCaptureModeGlobal): it fails and
// invalidates the captures, as the driver does.
bool capture_forbids(const char* what) {
  std::lock_guard<std::mutex> g(g_capture_mu);
  if (g_capturing == 0) return false;
  fail(cudaErrorStreamCaptureUnsupported, std::string(what) + " while a stream is being captured");
  return true;
}

void invalidate(CUstream_st* s) { s->invalidated = true; }

// Runs an op now, or records it when its stream captures.
cudaError_t enqueue(cudaStream_t s, Op op) {
  CUstream_st* st = stream_of(s);
  if (st->capturing) {
    st->ops.push_back(std::move(op));
    return cudaSuccess;
  }
  try {
    op();
  } catch (const std::exception& e) {
    return fail(cudaErrorLaunchFailure, e.what());
  }
  return cudaSuccess;
}

std::map<const void*, int>& smem_optin() {
  static auto* m = new std::map<const void*, int>();
  return *m;
}
std::mutex g_attr_mu;

void execute(const Launch& l) {
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
    throw std::runtime_error(std::string("kernel ") + l.name + " " + dim_str(l.grid) + "x" + dim_str(l.block) + ": " + e.what());
  }
  t_block = saved;
  t_counts = nullptr;
  if (stats_on()) add_stats(l.name, counts);
  std::string rz = check_redzones();
  if (!rz.empty()) throw std::runtime_error(std::string("kernel ") + l.name + ": " + rz);
}

}  // namespace

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
  if (w.rv.arrived == 0) w.what = what;
  else if (w.what != what && std::strcmp(w.what, what) != 0)
    throw std::runtime_error(std::string("lanes of one warp in different collectives: ") + w.what + " and " + what);
  arrive(w.rv, what);
  pick(w);
  arrive(w.rv, what);
}
}  // namespace

void warp_exchange(const void* in, size_t bytes, const std::function<void(const unsigned char* const*, int)>& pick, const char* what) {
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

unsigned char* dynamic_smem() { return t_block->smem; }

cudaError_t func_set_attribute(const void* fn, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return fail(cudaErrorInvalidValue, "unsupported function attribute");
  if (value < 0 || static_cast<size_t>(value) > kOptinSmem)
    return fail(cudaErrorInvalidValue, "MaxDynamicSharedMemorySize " + std::to_string(value) + " above the 227 KiB opt-in limit");
  std::lock_guard<std::mutex> g(g_attr_mu);
  smem_optin()[fn] = value;
  return cudaSuccess;
}

void submit(Launch l, cudaStream_t s) {
  const uint64_t nt = static_cast<uint64_t>(l.block.x) * l.block.y * l.block.z;
  std::string bad;
  if (nt == 0 || nt > kMaxThreads || l.block.x > 1024 || l.block.y > 1024 || l.block.z > 64) bad = "block " + dim_str(l.block);
  if (l.grid.x == 0 || l.grid.y == 0 || l.grid.z == 0 || l.grid.y > 65535 || l.grid.z > 65535 || l.grid.x > 2147483647u)
    bad = "grid " + dim_str(l.grid);
  if (l.smem > kDefaultSmem) {
    int optin = 0;
    {
      std::lock_guard<std::mutex> g(g_attr_mu);
      auto it = smem_optin().find(l.fn);
      if (l.fn && it != smem_optin().end()) optin = it->second;
    }
    if (static_cast<size_t>(optin) < l.smem)
      bad = std::to_string(l.smem) + " bytes of dynamic shared memory without cudaFuncSetAttribute(MaxDynamicSharedMemorySize)";
  }
  if (!bad.empty()) {
    fail(cudaErrorInvalidConfiguration, std::string("kernel ") + l.name + ": invalid launch: " + bad);
    return;
  }
  auto shared = std::make_shared<Launch>(std::move(l));
  cudaError_t e = enqueue(s, [shared] { execute(*shared); });
  (void)e;
}

}  // namespace medic_emu

// ---- Runtime API ----------------------------------------------------------------------------------
using namespace medic_emu;

cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice, "only device 0 is emulated"); }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  if (d != 0) return fail(cudaErrorInvalidDevice, "only device 0 is emulated");
  std::memset(p, 0, sizeof *p);
  std::snprintf(p->name, sizeof p->name, "medic CUDA emulator (CPU)");
  p->totalGlobalMem = size_t(16) << 30;
  p->sharedMemPerBlock = kDefaultSmem;
  p->sharedMemPerBlockOptin = kOptinSmem;
  p->warpSize = 32;
  p->maxThreadsPerBlock = kMaxThreads;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = kSmCount;
  p->clockRate = 1000000;
  p->memoryClockRate = 1000000;
  p->memoryBusWidth = 4096;
  p->l2CacheSize = size_t(50) << 20;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int d) {
  if (d != 0) return fail(cudaErrorInvalidDevice, "only device 0 is emulated");
  if (a == cudaDevAttrMultiProcessorCount) *v = kSmCount;
  else if (a == cudaDevAttrMaxSharedMemoryPerBlockOptin) *v = static_cast<int>(kOptinSmem);
  else return fail(cudaErrorInvalidValue, "unsupported device attribute");
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() {
  if (capture_forbids("cudaDeviceSynchronize")) return t_last;
  return cudaSuccess;
}
cudaError_t cudaGetLastError() {
  cudaError_t e = t_last;
  t_last = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return t_last; }
const char* cudaGetErrorString(cudaError_t e) {
  static thread_local std::string s;
  const char* base = "unknown error";
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: base = "invalid argument"; break;
    case cudaErrorMemoryAllocation: base = "out of memory"; break;
    case cudaErrorInvalidConfiguration: base = "invalid configuration argument"; break;
    case cudaErrorInvalidDevice: base = "invalid device ordinal"; break;
    case cudaErrorInvalidResourceHandle: base = "invalid resource handle"; break;
    case cudaErrorLaunchFailure: base = "unspecified launch failure"; break;
    case cudaErrorStreamCaptureUnsupported: base = "operation not permitted when stream is capturing"; break;
    case cudaErrorStreamCaptureInvalidated: base = "operation failed due to a previous error during capture"; break;
    default: break;
  }
  s = std::string(base) + (t_detail.empty() ? "" : " [emulator: " + t_detail + "]");
  return s.c_str();
}

cudaError_t cudaMalloc(void** p, size_t bytes) {
  if (capture_forbids("cudaMalloc")) return t_last;
  *p = mem_alloc(bytes, false);
  return *p ? cudaSuccess : fail(cudaErrorMemoryAllocation, "malloc failed");
}
cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  if (capture_forbids("cudaFree")) return t_last;
  std::lock_guard<std::mutex> g(g_mem_mu);
  auto it = allocs().find(reinterpret_cast<uintptr_t>(p));
  if (it == allocs().end()) return fail(cudaErrorInvalidValue, "cudaFree of a pointer that is not a live allocation");
  bool ok = redzone_intact(it->first, it->second);
  if (!it->second.pinned) g_live_bytes -= it->second.bytes;
  if (it->second.mapped)
    munmap(p, it->second.mapped);
  else
    std::free(p);
  allocs().erase(it);
  return ok ? cudaSuccess : fail(cudaErrorLaunchFailure, "write past the end of a device allocation found at its cudaFree");
}
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t s) {
  if (stream_of(s)->capturing) {
    invalidate(stream_of(s));
    return fail(cudaErrorStreamCaptureUnsupported, "cudaMallocAsync inside a captured step (medic sizes memory before capture)");
  }
  return cudaMalloc(p, bytes);
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t s) {
  if (stream_of(s)->capturing) {
    invalidate(stream_of(s));
    return fail(cudaErrorStreamCaptureUnsupported, "cudaFreeAsync inside a captured step");
  }
  return cudaFree(p);
}
cudaError_t cudaMallocHost(void** p, size_t bytes) {
  *p = mem_alloc(bytes, true);
  return *p ? cudaSuccess : fail(cudaErrorMemoryAllocation, "malloc failed");
}
cudaError_t cudaFreeHost(void* p) { return cudaFree(p); }

namespace {
// Device-side ranges must lie inside one live allocation.
cudaError_t check_range(const void* p, size_t n, const char* what) {
  if (n == 0) return cudaSuccess;
  if (!find_alloc(p, n)) return fail(cudaErrorInvalidValue, std::string(what) + ": device range of " + std::to_string(n) + " bytes outside any allocation");
  return cudaSuccess;
}
}  // namespace

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind k, cudaStream_t s) {
  bool dst_dev = k == cudaMemcpyHostToDevice || k == cudaMemcpyDeviceToDevice;
  bool src_dev = k == cudaMemcpyDeviceToHost || k == cudaMemcpyDeviceToDevice;
  if (dst_dev && check_range(dst, bytes, "cudaMemcpyAsync dst")) return t_last;
  if (src_dev && check_range(src, bytes, "cudaMemcpyAsync src")) return t_last;
  if (stream_of(s)->capturing && k != cudaMemcpyDeviceToDevice) {
    bool pinned = false;
    const void* host = k == cudaMemcpyHostToDevice ? src : dst;
    if (!find_alloc(host, bytes, &pinned) || !pinned) {
      invalidate(stream_of(s));
      return fail(cudaErrorStreamCaptureUnsupported, "copy between the device and pageable host memory inside a captured step");
    }
  }
  if (dry_run() && k == cudaMemcpyDeviceToDevice) return cudaSuccess;  // device contents are not computed
  return enqueue(s, [=] { std::memcpy(dst, src, bytes); });
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind k) {
  if (capture_forbids("cudaMemcpy")) return t_last;
  return cudaMemcpyAsync(dst, src, bytes, k, nullptr);
}
cudaError_t cudaMemsetAsync(void* p, int v, size_t bytes, cudaStream_t s) {
  if (check_range(p, bytes, "cudaMemsetAsync")) return t_last;
  if (dry_run()) return cudaSuccess;
  return enqueue(s, [=] { std::memset(p, v, bytes); });
}
cudaError_t cudaMemset(void* p, int v, size_t bytes) {
  if (capture_forbids("cudaMemset")) return t_last;
  return cudaMemsetAsync(p, v, bytes, nullptr);
}

cudaError_t cudaStreamCreate(cudaStream_t* s) {
  *s = new CUstream_st();
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) { return cudaStreamCreate(s); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (s && s->capturing) return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamDestroy of a capturing stream");
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  if (stream_of(s)->capturing) {
    invalidate(stream_of(s));
    return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamSynchronize of a capturing stream");
  }
  if (capture_forbids("cudaStreamSynchronize")) return t_last;
  return cudaSuccess;
}
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
  CUstream_st* st = stream_of(s);
  if (!s) return fail(cudaErrorStreamCaptureUnsupported, "capture of the legacy default stream");
  if (st->capturing) return fail(cudaErrorInvalidValue, "stream already capturing");
  st->capturing = true;
  st->invalidated = false;
  st->ops.clear();
  std::lock_guard<std::mutex> g(g_capture_mu);
  ++g_capturing;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g) {
  CUstream_st* st = stream_of(s);
  *g = nullptr;
  if (!st->capturing) return fail(cudaErrorInvalidValue, "stream is not capturing");
  st->capturing = false;
  {
    std::lock_guard<std::mutex> lk(g_capture_mu);
    --g_capturing;
  }
  if (st->invalidated) {
    st->ops.clear();
    return fail(cudaErrorStreamCaptureInvalidated, "the capture was invalidated by an earlier call");
  }
  *g = new CUgraph_st{std::move(st->ops)};
  st->ops.clear();
  return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus* status) {
  CUstream_st* st = stream_of(s);
  *status = !st->capturing ? cudaStreamCaptureStatusNone : st->invalidated ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}
cudaError_t cudaGraphGetNodes(cudaGraph_t g, cudaGraphNode_t*, size_t* count) {
  *count = g->ops.size();
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* e, cudaGraph_t g, unsigned long long) {
  if (verbose()) std::fprintf(stderr, "medic emulator: graph instantiated with %zu nodes\n", g->ops.size());
  *e = new CUgraphExec_st{g->ops};
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s) {
  if (stream_of(s)->capturing) return fail(cudaErrorStreamCaptureUnsupported, "graph launch inside a capture");
  if (verbose()) std::fprintf(stderr, "medic emulator: graph launch (%zu nodes)\n", e->ops.size());
  for (const Op& op : e->ops) {
    cudaError_t r = enqueue(s, op);
    if (r != cudaSuccess) return r;
  }
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
  delete g;
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
  delete e;
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = new CUevent_st();
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
  e->t = std::chrono::steady_clock::now();
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
  return cudaSuccess;
}
