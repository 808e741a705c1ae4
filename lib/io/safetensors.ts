// safetensors, read and written by us (no maintained npm package exists).
//
// Format: 8-byte little-endian header length n, then n bytes of JSON
//   { "<name>": { "dtype": "F32", "shape": [..], "data_offsets": [begin, end] }, "__metadata__": {..} }
// then the data section; offsets are relative to the start of the data section.
// Reads stream: the header is read first and validated in full (dtypes, shapes vs byte ranges, ranges
// inside the file, no overlaps), then each tensor is read on demand with a positioned read, so a
// multi-GB checkpoint is never loaded whole.
import { closeSync, fstatSync, openSync, readSync, writeSync, renameSync, fsyncSync, unlinkSync } from 'node:fs';

export type SafeDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const BYTES: Record<SafeDType, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export interface TensorInfo {
  name: string;
  dtype: SafeDType;
  shape: number[];
  begin: number; // absolute file offset
  end: number;
}

export type TensorData =
  Float64Array | Float32Array | Uint16Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array;

export interface WriteTensor {
  dtype: SafeDType;
  shape: number[];
  data: TensorData;
}

const MAX_HEADER = 100 * 1024 * 1024;

export class SafetensorsFile {
  readonly path: string;
  readonly tensors = new Map<string, TensorInfo>();
  readonly metadata: Record<string, string> = {};
  private fd: number | null;

  constructor(path: string) {
    this.path = path;
    // fs errors (EISDIR, ENOENT, EACCES) do not name the file: say which, and what was expected.
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      throw new Error(
        `${path}: cannot open (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); expected a safetensors file`,
        { cause: err },
      );
    }
    if (!fstatSync(fd).isFile()) {
      closeSync(fd);
      throw new Error(`${path}: is a folder, expected a safetensors file`);
    }
    this.fd = fd;
    try {
      this.parseHeader();
    } catch (err) {
      this.close();
      throw err;
    }
  }

  private fail(msg: string): never {
    throw new Error(`${this.path}: not a valid safetensors file: ${msg}`);
  }

  private parseHeader(): void {
    const size = fstatSync(this.fd!).size;
    if (size < 8) this.fail(`file is ${size} bytes, shorter than the 8-byte header length`);
    const lenBuf = Buffer.alloc(8);
    readSync(this.fd!, lenBuf, 0, 8, 0);
    const n = Number(lenBuf.readBigUInt64LE(0));
    if (n < 2 || n > MAX_HEADER || 8 + n > size) this.fail(`header length ${n} does not fit a file of ${size} bytes`);
    const hdr = Buffer.alloc(n);
    readSync(this.fd!, hdr, 0, n, 8);
    let json: unknown;
    try {
      json = JSON.parse(hdr.toString('utf8'));
    } catch (err) {
      this.fail(`header is not JSON (${(err as Error).message})`);
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json)) this.fail('header is not a JSON object');
    const dataStart = 8 + n;
    const ranges: [number, number, string][] = [];
    for (const [name, v] of Object.entries(json as Record<string, unknown>)) {
      if (name === '__metadata__') {
        if (v && typeof v === 'object') for (const [k, s] of Object.entries(v)) this.metadata[k] = String(s);
        continue;
      }
      if (typeof v !== 'object' || v === null || Array.isArray(v))
        this.fail(`tensor '${name}' is ${JSON.stringify(v)}, expected an object {dtype, shape, data_offsets}`);
      const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (typeof e.dtype !== 'string' || !(e.dtype in BYTES))
        this.fail(`tensor '${name}' has unsupported dtype ${JSON.stringify(e.dtype)}`);
      if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0))
        this.fail(`tensor '${name}' has a bad shape ${JSON.stringify(e.shape)}`);
      const off = e.data_offsets;
      if (
        !Array.isArray(off) ||
        off.length !== 2 ||
        !off.every((d) => Number.isInteger(d) && d >= 0) ||
        off[0] > off[1]
      )
        this.fail(`tensor '${name}' has bad data_offsets ${JSON.stringify(off)}`);
      const dtype = e.dtype as SafeDType;
      const shape = e.shape as number[];
      const want = shape.reduce((a, b) => a * b, 1) * BYTES[dtype];
      const [b0, b1] = off as [number, number];
      if (b1 - b0 !== want)
        this.fail(`tensor '${name}' ${dtype}${JSON.stringify(shape)} needs ${want} bytes, its offsets span ${b1 - b0}`);
      if (dataStart + b1 > size)
        this.fail(`tensor '${name}' ends at byte ${dataStart + b1}, past the end of the file (${size}): truncated?`);
      this.tensors.set(name, { name, dtype, shape, begin: dataStart + b0, end: dataStart + b1 });
      ranges.push([b0, b1, name]);
    }
    ranges.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < ranges.length; i++)
      if (ranges[i][0] < ranges[i - 1][1]) this.fail(`tensors '${ranges[i - 1][2]}' and '${ranges[i][2]}' overlap`);
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`${this.path}: no tensor named '${name}'`);
    return t;
  }

  /** Raw bytes of one tensor. */
  bytes(name: string): Buffer {
    if (this.fd === null) throw new Error(`${this.path}: file was closed`);
    const t = this.info(name);
    const buf = Buffer.alloc(t.end - t.begin);
    let done = 0;
    while (done < buf.length) {
      const n = readSync(this.fd, buf, done, buf.length - done, t.begin + done);
      if (n <= 0) throw new Error(`${this.path}: unexpected end of file reading '${name}'`);
      done += n;
    }
    return buf;
  }

  /** The tensor in its stored dtype (F16/BF16 as raw Uint16Array bits). */
  read(name: string): TensorData {
    const t = this.info(name);
    const b = this.bytes(name);
    // bytes() allocates each tensor its own ArrayBuffer (Buffer.alloc does not pool): view it, no copy.
    const whole = b.byteOffset === 0 && b.byteLength === b.buffer.byteLength;
    const ab = whole ? b.buffer : b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
    switch (t.dtype) {
      case 'F64':
        return new Float64Array(ab);
      case 'F32':
        return new Float32Array(ab);
      case 'F16':
      case 'BF16':
        return new Uint16Array(ab);
      case 'I64':
        return new BigInt64Array(ab);
      case 'I32':
        return new Int32Array(ab);
      case 'I16':
        return new Int16Array(ab);
      case 'I8':
        return new Int8Array(ab);
      case 'U8':
      case 'BOOL':
        return new Uint8Array(ab);
    }
  }

  /** Any float tensor converted to f32. */
  readF32(name: string): Float32Array {
    const t = this.info(name);
    const raw = this.read(name);
    switch (t.dtype) {
      case 'F32':
        return raw as Float32Array;
      case 'F64':
        return Float32Array.from(raw as Float64Array);
      case 'BF16':
        return bf16ToF32(raw as Uint16Array);
      case 'F16':
        return f16ToF32(raw as Uint16Array);
      default:
        throw new Error(`${this.path}: tensor '${name}' is ${t.dtype}, expected a float tensor (F32, F16, BF16, F64)`);
    }
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

export function bf16ToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < src.length; i++) u[i] = src[i] << 16;
  return out;
}

export function f32ToBf16(src: Float32Array): Uint16Array {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const x = u[i];
    if ((x & 0x7fffffff) > 0x7f800000) out[i] = (x >>> 16) | 0x40;
    else out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}

export function f16ToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const h = src[i];
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) out[i] = s * m * 2 ** -24;
    else if (e === 31) out[i] = m ? NaN : s * Infinity;
    else out[i] = s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return out;
}

function dataBytes(t: WriteTensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/**
 * Write tensors atomically: to `<path>.tmp-<pid>`, fsync, then rename over `path`, so a crash never
 * leaves a half-written file under the final name.
 */
export function writeSafetensors(
  path: string,
  tensors: Record<string, WriteTensor>,
  metadata: Record<string, string> = {},
): void {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  const order = Object.keys(tensors);
  for (const name of order) {
    const t = tensors[name];
    const want = t.shape.reduce((a, b) => a * b, 1) * BYTES[t.dtype];
    if (t.data.byteLength !== want)
      throw new Error(
        `writeSafetensors(${path}): tensor '${name}' ${t.dtype}${JSON.stringify(t.shape)} needs ${want} bytes, got ${t.data.byteLength}`,
      );
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + want] };
    offset += want;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.length % 8)) % 8; // keep the data section 8-byte aligned
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, len);
    writeSync(fd, json);
    for (const name of order) {
      const b = dataBytes(tensors[name]);
      let done = 0;
      while (done < b.length) done += writeSync(fd, b, done, b.length - done);
    }
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      /* already gone */
    }
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
}
