// Checkpoint integrity (issue 10, items 6 and 7): seeded mutants of a real checkpoint (bit flips,
// byte runs, truncations, edits of the training state) go through what `--resume` does before it
// trains. Each must be either rejected with an Error that names the checkpoint file, or accepted
// with exactly the original state: no crash, no raw TypeError/SyntaxError/RangeError, no silent change.
// Some state edits also forge the state's checksum, so that the field validation behind it is
// exercised too (those may be accepted with a valid changed value: nothing could tell).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import {
  checkParamTable,
  loadCheckpoint,
  paramTable,
  readCheckpointState,
  saveCheckpoint,
  type Checkpoint,
  type TrainState,
} from '../../lib/io/checkpoint.js';
import { pretrainConfig } from '../../lib/cli/pretrain.js';
import { crc32cHex } from '../../lib/io/crc32c.js';
import { resolveConfig, type PretrainConfig } from '../../lib/train/config.js';
import { buildTrainModel } from '../../lib/train/build.js';

const dir = mkdtempSync(join(tmpdir(), 'medic-fuzz-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// A micro student's real parameter table and config, with a few thousand parameters.
const config = resolveConfig(
  {},
  {
    data: 'synthetic:64:2',
    imgSize: 16,
    patchSize: 4,
    model: 'micro',
    teacherDim: 32,
    teacherDepth: 1,
    teacherHeads: 2,
    decoderDim: 16,
    decoderDepth: 1,
    decoderHeads: 2,
    batchSize: 8,
    epochs: 2,
    out: join(dir, 'run'),
  },
);
const table = paramTable(buildTrainModel(config).cg);
const n = table.reduce((a, p) => Math.max(a, p.offset + p.shape.reduce((x, y) => x * y, 1)), 0);

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** What --resume does with a checkpoint before the first step; returns what it would train from. */
function resumeCheck(path: string): { state: TrainState; config: PretrainConfig; ck: Checkpoint } {
  const c = pretrainConfig({ resume: path, out: join(dir, 'resumed') }); // the CLI's merge of checkpoint and flags
  const ck = loadCheckpoint(path);
  checkParamTable(ck.path, ck.state.paramTable, table);
  return { state: readCheckpointState(path).state, config: c, ck };
}

const headerOf = (b: Buffer) => {
  const len = Number(b.readBigUInt64LE(0));
  return { len, json: JSON.parse(b.subarray(8, 8 + len).toString('utf8')) as Record<string, unknown> };
};

function withHeader(b: Buffer, header: Record<string, unknown>, len: number): Buffer {
  let json = Buffer.from(JSON.stringify(header));
  // keep the data where it was: pad (or, rarely, give up and let the length change)
  if (json.length < len) json = Buffer.concat([json, Buffer.alloc(len - json.length, 0x20)]);
  const l = Buffer.alloc(8);
  l.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([l, json, b.subarray(8 + len)]);
}

const badValues: unknown[] = [null, -1, 1.5, 'x', 1e300, [], {}, true, 2 ** 60, undefined];

/** Sets a random leaf of the training state to a bad value (undefined deletes it). */
function mutateState(s: Record<string, unknown>, rnd: () => number): string {
  const paths: string[][] = [
    ['step'],
    ['epoch'],
    ['dataPosition'],
    ['dataPosition', 'epoch'],
    ['dataPosition', 'index'],
    ['seed'],
    ['config'],
    ['paramTable'],
    ['extra'],
  ];
  for (const k of Object.keys(s.config as object)) paths.push(['config', k]);
  const pt = s.paramTable as unknown[];
  const i = Math.floor(rnd() * pt.length);
  for (const k of ['name', 'shape', 'offset']) paths.push(['paramTable', String(i), k]);
  paths.push(['paramTable', String(i)]);
  const path = paths[Math.floor(rnd() * paths.length)];
  let o = s as Record<string, unknown>;
  for (const k of path.slice(0, -1)) o = o[k] as Record<string, unknown>;
  const v = badValues[Math.floor(rnd() * badValues.length)];
  if (v === undefined) delete o[path[path.length - 1]];
  else o[path[path.length - 1]] = v;
  return path.join('.');
}

describe('checkpoint fuzz', () => {
  it('rejects every corrupted checkpoint by name, or loads exactly what was saved', () => {
    const rnd = mulberry32(20261204);
    const init = (k: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + k));
    const original = saveCheckpoint(join(dir, 'run', 'checkpoints'), {
      state: {
        step: 6,
        epoch: 1,
        dataPosition: { epoch: 1, index: 16 },
        seed: 0,
        config: { ...config },
        paramTable: table,
        extra: { knnRandom: { 10: 0.5, 20: 0.5 } },
      },
      params: init(0),
      m: init(1),
      v: init(2).map(Math.abs),
    });
    const good = readFileSync(original);
    const ref = resumeCheck(original);
    const { len } = headerOf(good);
    const counts = {
      rejected: 0,
      accepted: 0,
      forged: 0,
      raw: [] as string[],
      unnamed: [] as string[],
      silent: [] as string[],
    };
    const N = 300;
    for (let t = 0; t < N; t++) {
      let b: Buffer = Buffer.from(good);
      let what: string;
      let forged = false;
      const r = rnd();
      if (r < 0.35) {
        const pos = Math.floor(rnd() * b.length);
        b[pos] ^= 1 << Math.floor(rnd() * 8);
        what = `bit flip at ${pos}${pos < 8 + len ? ' (header)' : ' (data)'}`;
      } else if (r < 0.5) {
        const pos = 8 + Math.floor(rnd() * len);
        b[pos] ^= 1 << Math.floor(rnd() * 8);
        what = `header bit flip at ${pos}`;
      } else if (r < 0.6) {
        const at = Math.floor(rnd() * b.length);
        b = b.subarray(0, at);
        what = `truncated to ${at}`;
      } else if (r < 0.7) {
        const pos = Math.floor(rnd() * b.length);
        const k = 1 + Math.floor(rnd() * 16);
        for (let i = pos; i < Math.min(b.length, pos + k); i++) b[i] = Math.floor(rnd() * 256);
        what = `${k} random bytes at ${pos}`;
      } else {
        const h = headerOf(b).json;
        const meta = h.__metadata__ as Record<string, string>;
        const s = JSON.parse(meta.medic) as Record<string, unknown>;
        what = `state edit ${mutateState(s, rnd)}`;
        meta.medic = JSON.stringify(s);
        if (rnd() < 0.5) {
          const crc = JSON.parse(meta.crc32c) as Record<string, string>;
          crc.medic = crc32cHex(Buffer.from(meta.medic, 'utf8'));
          meta.crc32c = JSON.stringify(crc);
          forged = true;
          counts.forged++;
          what += ' (checksum forged)';
        }
        b = withHeader(b, h, len);
      }
      const p = join(dir, `mutant-${t}.safetensors`);
      writeFileSync(p, b);
      try {
        const got = resumeCheck(p);
        counts.accepted++;
        const same =
          JSON.stringify(got.state) === JSON.stringify(ref.state) &&
          JSON.stringify(got.config) === JSON.stringify(ref.config) &&
          Buffer.compare(Buffer.from(got.ck.params.buffer), Buffer.from(ref.ck.params.buffer)) === 0 &&
          Buffer.compare(Buffer.from(got.ck.m.buffer), Buffer.from(ref.ck.m.buffer)) === 0 &&
          Buffer.compare(Buffer.from(got.ck.v.buffer), Buffer.from(ref.ck.v.buffer)) === 0;
        if (!same && !forged) counts.silent.push(what);
      } catch (err) {
        counts.rejected++;
        const e = err as Error;
        if (!(e instanceof Error) || e.constructor !== Error) counts.raw.push(`${what}: ${String(e)}`);
        else if (!e.message.includes(p)) counts.unnamed.push(`${what}: ${e.message}`);
      }
      rmSync(p);
    }
    console.log(
      `checkpoint fuzz: ${N} mutants (${counts.forged} with a forged checksum), ${counts.rejected} rejected, ${counts.accepted} accepted; ${counts.raw.length} raw errors, ${counts.unnamed.length} without the file name, ${counts.silent.length} silent state changes`,
    );
    expect(counts.rejected + counts.accepted).toBe(N);
    expect(counts.raw, counts.raw.slice(0, 5).join('\n')).toEqual([]);
    expect(counts.unnamed, counts.unnamed.slice(0, 5).join('\n')).toEqual([]);
    expect(counts.silent, counts.silent.slice(0, 5).join('\n')).toEqual([]);
    // most mutants damage something: the checksum or the validation must have caught them
    expect(counts.rejected).toBeGreaterThan(N * 0.9);
    expect(counts.forged).toBeGreaterThan(20);
  });
});
