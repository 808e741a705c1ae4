// Force-included in every translation unit of the shipped binaries (CMake option MEDIC_PORTABLE).
//
// A binary linked here asks for the newest version of each glibc / libstdc++ symbol it uses, and the
// dynamic loader refuses it on older systems ("version `GLIBC_2.29' not found"). The old versions
// below still exist in every later library and behave the same for our calls:
// - log, pow: glibc 2.29 added versions without SVID error handling (we never read errno).
// - std::condition_variable::wait: GCC 12's libstdc++ re-exported it as GLIBCXX_3.4.30; the
//   GLIBCXX_3.4.11 symbol is the same function.
// glibc_floor.cpp defines the two symbols that have no older version. The result needs glibc >= 2.27
// (expf/logf) and libstdc++ >= GLIBCXX_3.4.22 (GCC 6); scripts/prebuild.mjs checks it with objdump.
#pragma once
#if defined(__linux__)
#include <features.h>  // defines __GLIBC__ (nothing else is included yet: this header comes first)
#endif
#if defined(__linux__) && defined(__x86_64__) && defined(__GLIBC__)
__asm__(".symver log,log@GLIBC_2.2.5");
__asm__(".symver pow,pow@GLIBC_2.2.5");
__asm__(
    ".symver "
    "_ZNSt18condition_variable4waitERSt11unique_lockISt5mutexE,_ZNSt18condition_variable4waitERSt11unique_"
    "lockISt5mutexE@GLIBCXX_3.4.11");
#endif
