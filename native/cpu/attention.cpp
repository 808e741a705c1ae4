// SCAFFOLD: replaced by the real kernels.
#include "medic/ops.h"

namespace medic::cpu {

void attention(const OpCall&) { throw Error("attention: not implemented yet"); }
void attention_bwd(const OpCall&) { throw Error("attention_bwd: not implemented yet"); }
void softmax(const OpCall&) { throw Error("softmax: not implemented yet"); }
void softmax_bwd(const OpCall&) { throw Error("softmax_bwd: not implemented yet"); }

}  // namespace medic::cpu
