// The engine's op names: MEDIC_OP_LIST in native/include/medic/ops.h, mirrored here in the same order
// so that a misspelt op fails `tsc`, not a run. test/unit/op-names.test.ts parses ops.h and compares
// (and the loaded binary's opNames()), so the two lists cannot drift apart.
export const OP_NAMES = [
  'fill', 'copy', 'cast', 'add', 'sum_to', 'gemm', 'gelu', 'gelu_bwd', 'quick_gelu', 'quick_gelu_bwd',
  'softmax', 'softmax_bwd', 'layernorm', 'layernorm_bwd', 'attention', 'attention_bwd', 'attention_probs', 'scale_add',
  'scale_add_bwd', 'drop_path_mask', 'copy_rows', 'gather_rows', 'scatter_rows', 'mask_fill',
  'mask_fill_bwd', 'patchify', 'unpatchify', 'pixel_norm', 'batchnorm', 'medic_loss', 'loss_weights', 'loss_weights_bwd', 'cross_entropy', 'grad_norm',
  'adamw', 'sgd', 'allreduce', 'allreduce_wait', 'init_normal', 'init_uniform',
] as const;

export type OpName = (typeof OP_NAMES)[number];
