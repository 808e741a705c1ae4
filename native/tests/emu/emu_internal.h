// Shared by the two halves of the CUDA emulator: exec.cpp runs kernels (fibers, barriers, warp
// collectives), runtime.cpp is the runtime API (memory, streams, graph capture, launch checks).
#pragma once

#include <cstddef>
#include <string>

#include "cuda_emu.h"

namespace medic_emu::detail {

// The device the emulator stands for: an H100/H200's limits, so that launch checks and
// shape-dependent plans (split-K reads the SM count) are the ones the GPU run will see.
constexpr int kMaxThreads = 1024;
constexpr size_t kDefaultSmem = 48 * 1024;
constexpr size_t kOptinSmem = 227 * 1024;  // sharedMemPerBlockOptin
constexpr int kSmCount = 132;

// Environment switches, read once ("1" turns them on).
bool verbose();  // MEDIC_EMU_VERBOSE: graph captures and launches, large allocations, peak memory
bool dry_run();  // MEDIC_EMU_DRY_RUN: launches are checked, no block runs, memory is only reserved

std::string dim_str(dim3 d);  // "(x,y,z)"

// exec.cpp: runs every block of a launch now, on this thread; throws (naming the kernel) on a
// deadlock, a bad collective or a write past an allocation.
void execute(const Launch& l);

// runtime.cpp: "" when every allocation's guard is intact, else which one was written past.
std::string check_redzones();

}  // namespace medic_emu::detail
