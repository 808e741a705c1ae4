// Tensors as the engine sees them: a typed, shaped view of memory on one device.
//
// A Tensor never owns memory. Storage is owned by an Engine allocation (eager tensors) or by a
// Program arena / bound tensor (step buffers); a Tensor is the cheap value that ops receive.
// Layout is always dense row-major: the last dimension is contiguous.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace medic {

// Every error the engine raises is a medic::Error with a message a user can act on
// (what was expected, what was found, where). The N-API layer turns it into a JS Error.
struct Error : std::runtime_error {
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

enum class DType : uint8_t { F32 = 0, BF16 = 1, I32 = 2, U8 = 3 };
enum class Device : uint8_t { CPU = 0, CUDA = 1 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::I32: return 4;
    case DType::U8: return 1;
  }
  return 0;
}
const char* dtype_name(DType t);
DType dtype_from_name(const std::string& name);  // "f32" | "bf16" | "i32" | "u8"; throws otherwise

constexpr int kMaxDims = 6;

struct Shape {
  int64_t d[kMaxDims] = {0, 0, 0, 0, 0, 0};
  int nd = 0;

  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < nd; ++i) n *= d[i];
    return n;
  }
  // Negative indices count from the end, as in Python.
  int64_t operator[](int i) const { return d[i < 0 ? nd + i : i]; }
  // Product of all dimensions except the last `k`.
  int64_t leading(int k = 1) const {
    int64_t n = 1;
    for (int i = 0; i < nd - k; ++i) n *= d[i];
    return n;
  }
  bool operator==(const Shape& o) const {
    if (nd != o.nd) return false;
    for (int i = 0; i < nd; ++i)
      if (d[i] != o.d[i]) return false;
    return true;
  }
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const;  // "[2, 3, 4]"
};

Shape make_shape(std::initializer_list<int64_t> dims);

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::F32;
  Device device = Device::CPU;
  Shape shape;

  int64_t numel() const { return shape.numel(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  bool defined() const { return data != nullptr || numel() == 0; }

  float* f32() const { return static_cast<float*>(data); }
  int32_t* i32() const { return static_cast<int32_t*>(data); }
  uint8_t* u8() const { return static_cast<uint8_t*>(data); }
  uint16_t* bf16() const { return static_cast<uint16_t*>(data); }

  std::string describe() const;  // "f32[2, 3] on cpu"
};

// bf16 <-> f32 (round to nearest even), shared by CPU kernels and tests.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

}  // namespace medic
