// medic CUDA emulator: runs our CUDA sources on the CPU, so their logic is checked where no GPU is.
//
// What it is: the subset of CUDA C++ and of the runtime API that native/cuda uses, implemented on the
// host. Every CUDA thread of a block is a fiber; blocks run one after another. Barriers
// (__syncthreads) and warp collectives (__shfl_xor_sync, ldmatrix, mma.sync) are real rendezvous of
// the fibers taking part, so a missing barrier, a collective reached by part of a warp, or a
// __syncthreads after some threads returned is reported (deadlock with the kernel's name), not
// papered over. mma.sync m16n8k16 and ldmatrix are implemented from the PTX ISA's fragment tables,
// independently of the comments in native/cuda/mma.cuh, so a wrong lane mapping in our kernels gives
// wrong numbers here exactly as on a GPU.
//
// How it is used: native/tests/emu/translate.mjs rewrites each .cu/.cuh (kernel launches
// `k<<<g, b, smem, s>>>(args)` and `extern __shared__` arrays) into plain C++ that includes this
// header through the shim <cuda_runtime.h> / <cuda_bf16.h> in emu/include; CMake's MEDIC_CUDA_EMU
// option builds medic_parity_emu (the parity harness) and medic_cuda_emu.node (the addon) from them.
//
// What it cannot tell (left to a GPU run): speed; races between threads that the emulator runs one
// after another between two barriers (MEDIC_EMU_ORDER=reverse|shuffle runs them in other orders to
// expose most missing barriers); the accuracy of --use_fast_math division and sqrt (only __expf's
// input rounding is modelled); real driver behaviour of graph capture beyond the rules enforced here.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>

#define MEDIC_CUDA_EMU 1

// ---- Qualifiers ---------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
// Static shared arrays: one instance per kernel (blocks run one at a time, so that is one per block).
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

// ---- Vector types (sizes and alignments as in CUDA's vector_types.h) -----------------------------
struct __attribute__((aligned(8))) float2 {
  float x, y;
};
struct __attribute__((aligned(16))) float4 {
  float x, y, z, w;
};
struct __attribute__((aligned(8))) uint2 {
  unsigned x, y;
};
struct __attribute__((aligned(16))) uint4 {
  unsigned x, y, z, w;
};
struct __attribute__((aligned(16))) int4 {
  int x, y, z, w;
};
struct __attribute__((aligned(4))) uchar4 {
  unsigned char x, y, z, w;
};
struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

// ---- bf16 (round to nearest even, NaN kept quiet, as cuda_bf16.h) --------------------------------
struct __nv_bfloat16 {
  uint16_t __x;
};
struct __attribute__((aligned(4))) __nv_bfloat162 {
  __nv_bfloat16 x, y;
};
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  __nv_bfloat16 r;
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    r.__x = static_cast<uint16_t>((u >> 16) | 0x40u);
  } else {
    u += 0x7fffu + ((u >> 16) & 1u);
    r.__x = static_cast<uint16_t>(u >> 16);
  }
  return r;
}
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
inline float __bfloat162float(__nv_bfloat16 b) {
  uint32_t u = static_cast<uint32_t>(b.__x) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return {u}; }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
  return {__float2bfloat16_rn(a), __float2bfloat16_rn(b)};
}

// ---- Math intrinsics ------------------------------------------------------------------------------
// __expf is ex2.approx(x * log2(e)) on the GPU: the product is rounded to f32 first, which is its
// dominant error at large |x|; that rounding is reproduced, ex2 itself is taken as exact.
inline float __expf(float x) { return std::exp2(static_cast<float>(x * 1.44269504088896341f)); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __dsqrt_rn(double a) { return std::sqrt(a); }
inline float rsqrtf(float a) { return 1.0f / std::sqrt(a); }
inline float normcdff(float x) { return 0.5f * std::erfc(-x * 0.70710678118654752f); }
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
// CUDA's integer/float min and max overloads (math_functions.h).
#define MEDIC_EMU_MINMAX(T)                        \
  inline T min(T a, T b) { return b < a ? b : a; } \
  inline T max(T a, T b) { return a < b ? b : a; }
MEDIC_EMU_MINMAX(int)
MEDIC_EMU_MINMAX(unsigned)
MEDIC_EMU_MINMAX(long)
MEDIC_EMU_MINMAX(long long)
#undef MEDIC_EMU_MINMAX
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
template <class T>
inline T __ldg(const T* p) {
  return *p;
}

// ---- Runtime API types ----------------------------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorLaunchFailure = 719,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureWrongThread = 908,
  cudaErrorUnknown = 999,
};
typedef cudaError_t cudaError;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
enum cudaStreamCaptureStatus {
  cudaStreamCaptureStatusNone = 0,
  cudaStreamCaptureStatusActive = 1,
  cudaStreamCaptureStatusInvalidated = 2
};
enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2
};
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16, cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
constexpr unsigned cudaStreamNonBlocking = 1;
constexpr unsigned cudaStreamDefault = 0;

struct CUstream_st;
struct CUevent_st;
struct CUgraph_st;
struct CUgraphExec_st;
typedef CUstream_st* cudaStream_t;
typedef CUevent_st* cudaEvent_t;
typedef CUgraph_st* cudaGraph_t;
typedef CUgraphExec_st* cudaGraphExec_t;
typedef struct CUgraphNode_st* cudaGraphNode_t;

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  size_t sharedMemPerBlockOptin;
  int warpSize;
  int maxThreadsPerBlock;
  int major, minor;
  int multiProcessorCount;
  int clockRate;
  int memoryClockRate;
  int memoryBusWidth;
  size_t l2CacheSize;
};

cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaGetDevice(int* d);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d);
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int d);
cudaError_t cudaDriverGetVersion(int* v);
cudaError_t cudaRuntimeGetVersion(int* v);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorString(cudaError_t e);

cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t s);
cudaError_t cudaFreeAsync(void* p, cudaStream_t s);
cudaError_t cudaMallocHost(void** p, size_t bytes);
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind k);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind k, cudaStream_t s = nullptr);
cudaError_t cudaMemset(void* p, int v, size_t bytes);
cudaError_t cudaMemsetAsync(void* p, int v, size_t bytes, cudaStream_t s = nullptr);

cudaError_t cudaStreamCreate(cudaStream_t* s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g);
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus* status);
cudaError_t cudaGraphGetNodes(cudaGraph_t g, cudaGraphNode_t* nodes, size_t* count);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* e, cudaGraph_t g, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e);

cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b);

// The typed overloads of cuda_runtime.h.
template <class T>
cudaError_t cudaMalloc(T** p, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
template <class T>
cudaError_t cudaMallocHost(T** p, size_t bytes) {
  return cudaMallocHost(reinterpret_cast<void**>(p), bytes);
}
template <class T>
cudaError_t cudaMallocAsync(T** p, size_t bytes, cudaStream_t s) {
  return cudaMallocAsync(reinterpret_cast<void**>(p), bytes, s);
}

namespace medic_emu {
cudaError_t func_set_attribute(const void* fn, cudaFuncAttribute attr, int value);
}
template <class T>
cudaError_t cudaFuncSetAttribute(T* fn, cudaFuncAttribute attr, int value) {
  return medic_emu::func_set_attribute(reinterpret_cast<const void*>(fn), attr, value);
}
inline size_t __cvta_generic_to_shared(const void* p) { return reinterpret_cast<size_t>(p); }

// ---- Execution: thread coordinates, barriers, warp collectives, launches -------------------------
namespace medic_emu {

struct ThreadCoords {
  uint3 tid, bid;
  dim3 bdim, gdim;
};
const ThreadCoords& coords();  // of the CUDA thread (fiber) now running

void syncthreads();
// Warp rendezvous with data: every lane of the warp puts `bytes` (<= 64) from `in`, waits for all
// lanes, then `pick` reads what it needs from the 32 slots before a second rendezvous frees them.
void warp_exchange(const void* in, size_t bytes,
                   const std::function<void(const unsigned char* const* slots, int lanes)>& pick, const char* what);
int lane_id();

// PTX mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 and ldmatrix.sync.aligned.m8n8.x4[.trans].
void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
void ldmatrix_x4(uint32_t (&r)[4], const void* row_addr, bool trans);
// PTX cp.async.cg.shared.global [dst], [src], bytes, src_bytes and cp.async.commit_group /
// wait_group n. A copy is queued per thread and lands at the latest moment the PTX ISA allows: when
// this thread's wait_group retires the group it was committed in (src_bytes from src, the rest of
// `bytes` zero-filled). Reading the destination before that wait (or, from another thread, before a
// barrier that follows it) sees the old shared memory (0xFF bytes when the block never wrote it).
void cp_async(void* dst, const void* src, int bytes, int src_bytes);
void cp_async_commit();
void cp_async_wait(int pending);

unsigned char* dynamic_smem();  // this block's `extern __shared__` array
// A static __shared__ variable reached by a thread: filled with 0xFF at its first use in each block.
void shared_declared(void* p, size_t bytes);
// First statement of a kernel with __launch_bounds__(max_threads): a bigger block fails the launch.
void check_launch_bounds(long long max_threads);

struct Launch {
  const char* name;
  const void* fn;  // for cudaFuncSetAttribute checks (null when the launch site cannot name it)
  dim3 grid, block;
  size_t smem;
  std::function<void()> body;  // runs one CUDA thread of the kernel, arguments already bound
};
void submit(Launch l, cudaStream_t s);

template <class F>
const void* fn_id(F* f) {
  return reinterpret_cast<const void*>(f);
}

// The arguments are evaluated and copied now (as a launch does), each thread gets its own copies.
template <class K, class... A>
void launch(const char* name, const void* fn, dim3 grid, dim3 block, size_t smem, cudaStream_t s, K kernel, A&&... a) {
  auto args = std::make_shared<std::tuple<std::decay_t<A>...>>(std::forward<A>(a)...);
  Launch l{name, fn, grid, block, smem, [kernel, args]() {
             auto copy = *args;
             std::apply(kernel, copy);
           }};
  submit(std::move(l), s);
}

}  // namespace medic_emu

#define threadIdx (::medic_emu::coords().tid)
#define blockIdx (::medic_emu::coords().bid)
#define blockDim (::medic_emu::coords().bdim)
#define gridDim (::medic_emu::coords().gdim)
constexpr int warpSize = 32;

inline void __syncthreads() { medic_emu::syncthreads(); }
inline void __syncwarp(unsigned = 0xffffffffu) {
  medic_emu::warp_exchange(
      nullptr, 0, [](const unsigned char* const*, int) {}, "__syncwarp");
}

// Atomics: blocks and threads run one at a time, so a plain read-modify-write is atomic.
inline int atomicCAS(int* p, int compare, int value) {
  int old = *p;
  if (old == compare) *p = value;
  return old;
}

template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  static_assert(sizeof(T) <= 64 && std::is_trivially_copyable<T>::value, "shuffle of a small trivially copyable value");
  T out{};
  const int me = medic_emu::lane_id();
  medic_emu::warp_exchange(
      &v, sizeof(T),
      [&](const unsigned char* const* slots, int lanes) {
        if (mask != 0xffffffffu || width != 32)
          throw std::runtime_error("emulator: __shfl_xor_sync supports the full-warp form only");
        int src = me ^ lane_mask;
        if (src >= lanes) throw std::runtime_error("emulator: __shfl_xor_sync reads an inactive lane");
        std::memcpy(&out, slots[src], sizeof(T));
      },
      "__shfl_xor_sync");
  return out;
}
template <class T>
T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  T out{};
  medic_emu::warp_exchange(
      &v, sizeof(T),
      [&](const unsigned char* const* slots, int lanes) {
        if (mask != 0xffffffffu || width != 32)
          throw std::runtime_error("emulator: __shfl_sync supports the full-warp form only");
        if (src_lane >= lanes) throw std::runtime_error("emulator: __shfl_sync reads an inactive lane");
        std::memcpy(&out, slots[src_lane & 31], sizeof(T));
      },
      "__shfl_sync");
  return out;
}
