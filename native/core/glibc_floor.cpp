// Linked into the shipped binaries only (CMake option MEDIC_PORTABLE); see glibc_floor.h.
//
// Two symbols the headers of GCC 12 / glibc 2.36 make us import have no older version to bind to, so
// the addon carries its own (hidden: they satisfy its own references and are not exported):
// - __libc_single_threaded (GLIBC_2.32): libstdc++ reads it to skip atomic reference counting in
//   single-threaded processes. Always 0 here ("threads may exist"): counts always use atomics, which is
//   correct in every process (and Node always has threads).
// - std::__throw_bad_array_new_length (GLIBCXX_3.4.29): what `new T[n]` calls for an impossible n.
#include <new>
#if defined(__linux__) && defined(__GLIBC__)

extern "C" {
__attribute__((visibility("hidden"))) char __libc_single_threaded = 0;
}

namespace std {
__attribute__((visibility("hidden"), noreturn)) void __throw_bad_array_new_length() { throw bad_array_new_length(); }
}  // namespace std
#endif
