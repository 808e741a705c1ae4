// MAE's fixed 2-D sin-cos position embedding (get_2d_sincos_pos_embed), row-major over the grid, with
// a zero row for CLS in front: [1 + gh*gw, D]. As in MAE's code, the first D/2 channels encode the
// column (grid[0] of meshgrid(w, h)) and the last D/2 the row; each half is [sin(pos*w_k), cos(pos*w_k)]
// with w_k = 1 / 10000^(k / (D/4)).
export function sincos2d(dim: number, gh: number, gw: number, clsRow = true): Float32Array {
  if (dim % 4) throw new Error(`sincos2d: dim ${dim} is not a multiple of 4`);
  const q = dim / 4;
  const off = clsRow ? 1 : 0;
  const out = new Float32Array((off + gh * gw) * dim);
  for (let r = 0; r < gh; r++)
    for (let c = 0; c < gw; c++) {
      const row = (off + r * gw + c) * dim;
      for (let k = 0; k < q; k++) {
        const w = 1 / Math.pow(10000, k / q);
        out[row + k] = Math.sin(c * w);
        out[row + q + k] = Math.cos(c * w);
        out[row + 2 * q + k] = Math.sin(r * w);
        out[row + 3 * q + k] = Math.cos(r * w);
      }
    }
  return out;
}
