// SCAFFOLD: replaced by the real kernels.
#include "medic/ops.h"

namespace medic::cpu {

void init_normal(const OpCall&) { throw Error("init_normal: not implemented yet"); }
void init_uniform(const OpCall&) { throw Error("init_uniform: not implemented yet"); }

}  // namespace medic::cpu
