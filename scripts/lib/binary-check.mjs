// Checks on a built .node file before it ships (scripts/prebuild.mjs):
// - glibcRequirements: the highest GLIBC_ and GLIBCXX_ symbol versions it imports (objdump -T), i.e.
//   the oldest glibc / libstdc++ it loads on.
// - fatbinEntries: the GPU code embedded by nvcc (no cuobjdump needed): each entry of the fat binary
//   is SASS for one sm_XX (kind 2, an ELF cubin) or PTX for one compute_XX (kind 1).
// - neededLibraries: the DT_NEEDED shared libraries (a static cudart leaves no libcudart there).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

function objdump(args, file) {
  const r = spawnSync('objdump', [...args, file], { encoding: 'utf8', maxBuffer: 256 << 20 });
  if (r.error || r.status !== 0)
    throw new Error(`objdump ${args.join(' ')} ${file} failed: ${r.error?.message ?? r.stderr}`);
  return r.stdout;
}

const cmpVersion = (a, b) => {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++)
    if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
  return 0;
};

/** { glibc: '2.27', glibcxx: '3.4.22' | null, symbols: { 'GLIBC_2.27': ['expf', ...] } } */
export function glibcRequirements(file) {
  const symbols = {};
  for (const line of objdump(['-T'], file).split('\n')) {
    const m = /\*UND\*\s+\S+\s+\((GLIBC(?:XX)?_[0-9.]+)\)\s+(\S+)/.exec(line);
    if (m) (symbols[m[1]] ??= []).push(m[2]);
  }
  const max = (prefix) =>
    Object.keys(symbols)
      .filter((k) => k.startsWith(prefix) && /^[0-9.]+$/.test(k.slice(prefix.length)))
      .map((k) => k.slice(prefix.length))
      .sort(cmpVersion)
      .pop() ?? null;
  return { glibc: max('GLIBC_'), glibcxx: max('GLIBCXX_'), symbols };
}

export function atMost(version, limit) {
  return version === null || cmpVersion(version, limit) <= 0;
}

export function neededLibraries(file) {
  return [...objdump(['-p'], file).matchAll(/NEEDED\s+(\S+)/g)].map((m) => m[1]);
}

/** [{ kind: 'sass' | 'ptx', arch: 80 }] for every fat binary embedded in the file. */
export function fatbinEntries(file) {
  const buf = readFileSync(file);
  const entries = [];
  // Fat binary container: magic 0xBA55ED50, u16 version, u16 header size, u64 size of the entries.
  for (
    let at = buf.indexOf(Buffer.from([0x50, 0xed, 0x55, 0xba]));
    at >= 0;
    at = buf.indexOf(Buffer.from([0x50, 0xed, 0x55, 0xba]), at + 4)
  ) {
    if (at + 16 > buf.length) break;
    const headerSize = buf.readUInt16LE(at + 6);
    const size = Number(buf.readBigUInt64LE(at + 8));
    let p = at + headerSize;
    const end = Math.min(buf.length, p + size);
    // Each entry: u16 kind, u16 version, u32 header size, u64 payload size, ..., u32 arch at +28.
    while (p + 32 <= end) {
      const kind = buf.readUInt16LE(p);
      const entryHeader = buf.readUInt32LE(p + 4);
      const payload = Number(buf.readBigUInt64LE(p + 8));
      if ((kind !== 1 && kind !== 2) || entryHeader < 32) break;
      entries.push({ kind: kind === 1 ? 'ptx' : 'sass', arch: buf.readUInt32LE(p + 28) });
      p += entryHeader + payload;
    }
  }
  const seen = new Set();
  return entries.filter((e) => {
    const k = `${e.kind}${e.arch}`;
    return seen.has(k) ? false : (seen.add(k), true);
  });
}
