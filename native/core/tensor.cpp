#include "medic/tensor.h"

#include <sstream>

namespace medic {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::I32: return "i32";
    case DType::U8: return "u8";
  }
  return "?";
}

DType dtype_from_name(const std::string& name) {
  if (name == "f32") return DType::F32;
  if (name == "bf16") return DType::BF16;
  if (name == "i32") return DType::I32;
  if (name == "u8") return DType::U8;
  throw Error("unknown dtype '" + name + "': expected one of f32, bf16, i32, u8");
}

std::string Shape::str() const {
  std::ostringstream s;
  s << "[";
  for (int i = 0; i < nd; ++i) s << (i ? ", " : "") << d[i];
  s << "]";
  return s.str();
}

Shape make_shape(std::initializer_list<int64_t> dims) {
  Shape s;
  for (int64_t v : dims) s.d[s.nd++] = v;
  return s;
}

std::string Tensor::describe() const {
  return std::string(dtype_name(dtype)) + shape.str() + (device == Device::CPU ? " on cpu" : " on cuda");
}

}  // namespace medic
