// Shim for the CPU emulator build (native/tests/emu): the CUDA runtime API is cuda_emu.h.
#pragma once
#include "../cuda_emu.h"
