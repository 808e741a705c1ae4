// Shim for the CPU emulator build (native/tests/emu): bf16 types and conversions are in cuda_emu.h.
#pragma once
#include "../cuda_emu.h"
