// SCAFFOLD: replaced by the real kernels.
#include "medic/ops.h"

namespace medic::cpu {

void fill(const OpCall&) { throw Error("fill: not implemented yet"); }
void copy(const OpCall&) { throw Error("copy: not implemented yet"); }
void cast(const OpCall&) { throw Error("cast: not implemented yet"); }
void add(const OpCall&) { throw Error("add: not implemented yet"); }
void sum_to(const OpCall&) { throw Error("sum_to: not implemented yet"); }
void gelu(const OpCall&) { throw Error("gelu: not implemented yet"); }
void gelu_bwd(const OpCall&) { throw Error("gelu_bwd: not implemented yet"); }
void quick_gelu(const OpCall&) { throw Error("quick_gelu: not implemented yet"); }
void quick_gelu_bwd(const OpCall&) { throw Error("quick_gelu_bwd: not implemented yet"); }
void scale_add(const OpCall&) { throw Error("scale_add: not implemented yet"); }
void scale_add_bwd(const OpCall&) { throw Error("scale_add_bwd: not implemented yet"); }
void drop_path_mask(const OpCall&) { throw Error("drop_path_mask: not implemented yet"); }

}  // namespace medic::cpu
