// The CUDA emulator stands in for the toolkit header (see cuda_emu.h).
#pragma once
#include "cuda_emu.h"
