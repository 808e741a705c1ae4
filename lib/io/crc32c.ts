// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum checkpoints store per tensor.
// Table-driven, eight bytes per iteration ("slicing-by-8"): a few hundred MB/s in plain JS, so a
// checkpoint's check costs a fraction of the time its read takes from disk. No dependency needed.
const POLY = 0x82f63b78;

const TABLES: Uint32Array[] = (() => {
  const t = Array.from({ length: 8 }, () => new Uint32Array(256));
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[0][i] = c >>> 0;
  }
  // t[k][i]: the CRC of byte i followed by k zero bytes
  for (let i = 0; i < 256; i++) for (let k = 1; k < 8; k++) t[k][i] = (t[k - 1][i] >>> 8) ^ t[0][t[k - 1][i] & 0xff];
  return t;
})();

/** Continues a CRC32C over `bytes` (start with 0); returns the unsigned 32-bit value. */
export function crc32c(bytes: Uint8Array, crc = 0): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = TABLES;
  let c = ~crc >>> 0;
  let i = 0;
  const n = bytes.length;
  for (; i + 8 <= n; i += 8) {
    const a = (c ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24))) >>> 0;
    c =
      t7[a & 0xff] ^
      t6[(a >>> 8) & 0xff] ^
      t5[(a >>> 16) & 0xff] ^
      t4[a >>> 24] ^
      t3[bytes[i + 4]] ^
      t2[bytes[i + 5]] ^
      t1[bytes[i + 6]] ^
      t0[bytes[i + 7]];
  }
  for (; i < n; i++) c = (c >>> 8) ^ t0[(c ^ bytes[i]) & 0xff];
  return ~c >>> 0;
}

/** The checksum as checkpoints write it: 8 lowercase hex digits. */
export function crc32cHex(bytes: Uint8Array): string {
  return crc32c(bytes).toString(16).padStart(8, '0');
}
