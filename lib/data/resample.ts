// Bilinear resampling of raw uint8 pixels (in-memory datasets: IDX, MNIST, synthetic).
//
// PIL's algorithm (what torchvision uses on PIL images): separable triangle filter whose support is
// widened by the scale factor when shrinking, so a downscale averages instead of aliasing. The source
// region is a box with float edges, and the filter taps are confined to a clip window: "resize then
// center crop" is the matching box with the whole image as window (the resize saw every pixel), "crop
// then resize" (torchvision's resized_crop: img.crop(box).resize()) is the crop box as both, so no
// pixel outside the crop leaks in at its border. Files decoded by sharp are resampled by libvips
// instead (kernel 'linear', the same filter), see folder.ts.

interface Coeffs {
  lo: Int32Array; // first source pixel per output pixel
  n: Int32Array; // number of taps per output pixel
  w: Float32Array; // taps, kmax per output pixel, normalised to sum 1
  kmax: number;
}

/** Taps for outSize pixels over the box [b0, b1), reading only source pixels in [clipLo, clipHi). */
function coefficients(clipLo: number, clipHi: number, b0: number, b1: number, outSize: number): Coeffs {
  const scale = (b1 - b0) / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale; // triangle filter has support 1
  const kmax = Math.ceil(support) * 2 + 1;
  const lo = new Int32Array(outSize);
  const n = new Int32Array(outSize);
  const w = new Float32Array(outSize * kmax);
  for (let o = 0; o < outSize; o++) {
    const center = b0 + (o + 0.5) * scale;
    let xmin = Math.max(Math.floor(center - support + 0.5), clipLo);
    let xmax = Math.min(Math.floor(center + support + 0.5), clipHi);
    if (xmax <= xmin) {
      // Degenerate box at the border: use the nearest pixel.
      xmin = Math.min(Math.max(Math.floor(center), clipLo), clipHi - 1);
      xmax = xmin + 1;
    }
    let sum = 0;
    const count = Math.min(xmax - xmin, kmax);
    for (let k = 0; k < count; k++) {
      const t = Math.abs((k + xmin - center + 0.5) / filterScale);
      const v = t < 1 ? 1 - t : 0;
      w[o * kmax + k] = v;
      sum += v;
    }
    if (sum > 0) for (let k = 0; k < count; k++) w[o * kmax + k] /= sum;
    else w[o * kmax] = 1;
    lo[o] = xmin;
    n[o] = Math.max(count, 1);
  }
  return { lo, n, w, kmax };
}

/**
 * Resample the box [x0, x1) x [y0, y1) (source pixels, float edges) of an HWC uint8 image with
 * `channels` 1 or 3 to an outW x outH RGB uint8 image (grayscale replicated to RGB). `clip` (integer
 * [cx0, cy0, cx1, cy1], default the whole image) bounds the pixels the filter may read.
 */
export function resampleBox(
  src: Uint8Array,
  width: number,
  height: number,
  channels: number,
  x0: number,
  y0: number,
  x1: number,
  y1: number,
  outW: number,
  outH: number,
  clip: readonly [number, number, number, number] = [0, 0, width, height],
): Uint8Array {
  if (channels !== 1 && channels !== 3) throw new RangeError(`resampleBox: channels must be 1 or 3, got ${channels}`);
  const cx = coefficients(clip[0], clip[2], x0, x1, outW);
  const cy = coefficients(clip[1], clip[3], y0, y1, outH);
  // Rows the vertical pass reads.
  let rowLo = height;
  let rowHi = 0;
  for (let o = 0; o < outH; o++) {
    rowLo = Math.min(rowLo, cy.lo[o]);
    rowHi = Math.max(rowHi, cy.lo[o] + cy.n[o]);
  }
  const c = channels;
  const rows = rowHi - rowLo;
  const tmp = new Float32Array(rows * outW * c);
  for (let r = 0; r < rows; r++) {
    const srow = (r + rowLo) * width * c;
    const trow = r * outW * c;
    for (let o = 0; o < outW; o++) {
      const base = o * cx.kmax;
      const lo = cx.lo[o];
      const n = cx.n[o];
      for (let ch = 0; ch < c; ch++) {
        let acc = 0;
        for (let k = 0; k < n; k++) acc += cx.w[base + k] * src[srow + (lo + k) * c + ch];
        tmp[trow + o * c + ch] = acc;
      }
    }
  }
  const out = new Uint8Array(outW * outH * 3);
  const rowStride = outW * c;
  for (let o = 0; o < outH; o++) {
    const base = o * cy.kmax;
    const lo = cy.lo[o] - rowLo;
    const n = cy.n[o];
    for (let x = 0; x < outW; x++) {
      for (let ch = 0; ch < c; ch++) {
        let acc = 0;
        for (let k = 0; k < n; k++) acc += cy.w[base + k] * tmp[(lo + k) * rowStride + x * c + ch];
        const v = acc <= 0 ? 0 : acc >= 255 ? 255 : Math.round(acc);
        const d = (o * outW + x) * 3;
        if (c === 3) out[d + ch] = v;
        else out[d] = out[d + 1] = out[d + 2] = v;
      }
    }
  }
  return out;
}

/** Any raw pixel layout sharp can return (1: gray, 2: gray+alpha, 3: RGB, 4: RGBA) to RGB, alpha dropped. */
export function toRGB(data: Uint8Array, channels: number, pixels: number): Uint8Array {
  if (channels === 3) return data.length === pixels * 3 ? data : data.subarray(0, pixels * 3);
  const out = new Uint8Array(pixels * 3);
  if (channels === 1 || channels === 2) {
    for (let p = 0; p < pixels; p++) out[3 * p] = out[3 * p + 1] = out[3 * p + 2] = data[p * channels];
  } else if (channels === 4) {
    for (let p = 0; p < pixels; p++) {
      out[3 * p] = data[4 * p];
      out[3 * p + 1] = data[4 * p + 1];
      out[3 * p + 2] = data[4 * p + 2];
    }
  } else {
    throw new RangeError(`toRGB: unsupported channel count ${channels}`);
  }
  return out;
}
