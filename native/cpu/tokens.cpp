// SCAFFOLD: replaced by the real kernels.
#include "medic/ops.h"

namespace medic::cpu {

void copy_rows(const OpCall&) { throw Error("copy_rows: not implemented yet"); }
void gather_rows(const OpCall&) { throw Error("gather_rows: not implemented yet"); }
void scatter_rows(const OpCall&) { throw Error("scatter_rows: not implemented yet"); }
void mask_fill(const OpCall&) { throw Error("mask_fill: not implemented yet"); }
void mask_fill_bwd(const OpCall&) { throw Error("mask_fill_bwd: not implemented yet"); }
void patchify(const OpCall&) { throw Error("patchify: not implemented yet"); }
void unpatchify(const OpCall&) { throw Error("unpatchify: not implemented yet"); }

}  // namespace medic::cpu
