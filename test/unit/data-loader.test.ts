// The loader: order and bytes independent of the worker count, resume, partial batches, unreadable
// files skipped and reported once, wait-time accounting, and worker threads that end (from the .ts
// sources through tsx, and from compiled .js as in dist/).
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import sharp from 'sharp';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import type { ImageDataset } from '../../lib/data/dataset.js';
import { DataLoader, type Batch, type LoaderOptions } from '../../lib/data/loader.js';
import { openData } from '../../lib/data/open.js';
import { CLASS_RGB, makeImageFolder, tempDir, type FolderFixture } from '../helpers/data.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const tmp = tempDir('data-loader');
let synth: ImageDataset;
let broken: FolderFixture;
let brokenDs: ImageDataset;

beforeAll(async () => {
  synth = (await openData('synthetic:90:3', { syntheticSize: 24, valFraction: 0 })).train;
  broken = await makeImageFolder(join(tmp.dir, 'broken'), { broken: true });
  brokenDs = (await openData(broken.root, { valFraction: 0 })).train;
});
afterAll(() => tmp.cleanup());

async function collect(
  ds: ImageDataset,
  o: LoaderOptions,
  limit = Infinity,
): Promise<{ batches: Batch[]; loader: DataLoader }> {
  const loader = new DataLoader(ds, o);
  const batches: Batch[] = [];
  for await (const b of loader) {
    batches.push(b);
    if (batches.length >= limit) break;
  }
  return { batches, loader };
}

const strip = (b: Batch) => ({
  images: b.images,
  labels: b.labels,
  indices: b.indices,
  size: b.size,
  epoch: b.epoch,
  position: b.position,
  next: b.next,
});

describe('order', () => {
  test('shuffled per (seed, epoch), partial batch dropped in training; labels and shapes', async () => {
    const o: LoaderOptions = {
      batchSize: 8,
      imageSize: 12,
      train: true,
      seed: 3,
      workers: 0,
      epochs: 2,
      sharedMemory: false,
    };
    const { batches, loader } = await collect(synth, o);
    expect(loader.batchesPerEpoch).toBe(11); // 90 / 8, last 2 dropped
    expect(batches.length).toBe(22);
    const e0 = loader.order(0);
    const e1 = loader.order(1);
    expect([...e0].sort((a, b) => a - b)).toEqual(Array.from({ length: 90 }, (_, i) => i));
    expect(e1).not.toEqual(e0);
    const other = new DataLoader(synth, { ...o, seed: 4 });
    expect(other.order(0)).not.toEqual(e0);
    await other.close();
    batches.forEach((b, k) => {
      const epoch = Math.floor(k / 11);
      const start = (k % 11) * 8;
      expect(b.epoch).toBe(epoch);
      expect(b.position).toEqual({ epoch, index: start });
      expect(b.next).toEqual(k % 11 === 10 ? { epoch: epoch + 1, index: 0 } : { epoch, index: start + 8 });
      expect(Array.from(b.indices)).toEqual(Array.from(loader.order(epoch).subarray(start, start + 8)));
      expect(Array.from(b.labels)).toEqual(Array.from(b.indices, (i) => synth.label(i)));
      expect(b.images.length).toBe(8 * 3 * 12 * 12);
      expect(b.images.buffer).toBeInstanceOf(ArrayBuffer);
      for (const v of b.images)
        if (!(v >= -2.2 && v <= 2.7)) throw new Error(`value ${v} outside the imagenet-normalised range`);
    });
    // The same sample in two epochs is augmented differently.
    const i = batches[0].indices[0];
    const k1 = batches.slice(11).findIndex((b) => b.indices.includes(i)) + 11;
    const at = (b: Batch, idx: number) =>
      b.images.subarray(b.indices.indexOf(idx) * 432, b.indices.indexOf(idx) * 432 + 432);
    expect(at(batches[k1], i)).not.toEqual(at(batches[0], i));
    const s = loader.stats();
    expect(s.batches).toBe(22);
    expect(s.images).toBe(176);
    expect(s.waitMs).toBeCloseTo(
      batches.reduce((t, b) => t + b.waitMs, 0),
      6,
    );
    expect(s.maxWaitMs).toBe(Math.max(...batches.map((b) => b.waitMs)));
    for (const b of batches) expect(b.waitMs).toBeGreaterThanOrEqual(0);
  });

  test('eval: dataset order, partial batch kept, one epoch by default, eval transform fixed', async () => {
    const o: LoaderOptions = { batchSize: 8, imageSize: 12, train: false, workers: 0 };
    const { batches, loader } = await collect(synth, o);
    expect(loader.batchesPerEpoch).toBe(12);
    expect(batches.map((b) => b.size)).toEqual([...new Array(11).fill(8), 2]);
    expect(Array.from(batches[11].indices)).toEqual([88, 89]);
    expect(batches[11].images.length).toBe(2 * 3 * 144);
    expect(batches[11].next).toEqual({ epoch: 1, index: 0 });
    expect(Array.from(batches.flatMap((b) => Array.from(b.indices)))).toEqual(Array.from({ length: 90 }, (_, i) => i));
    const padded = (await collect(synth, { ...o, padLast: true })).batches;
    expect(padded[11].size).toBe(2);
    expect(padded[11].images.length).toBe(8 * 3 * 144);
    expect(padded[11].images.subarray(0, 2 * 432)).toEqual(batches[11].images);
    expect(padded[11].images.subarray(2 * 432).every((v) => v === 0)).toBe(true);
    expect(Array.from(padded[11].labels)).toEqual([...Array.from(batches[11].labels), -1, -1, -1, -1, -1, -1]);
    expect(Array.from(padded[11].indices.subarray(2))).toEqual(new Array(6).fill(-1));
    expect(padded[3].images).toEqual(batches[3].images);
    const again = await collect(synth, { ...o, seed: 9, start: { epoch: 5, index: 0 } });
    expect(again.batches.map((b) => b.images)).toEqual(batches.map((b) => b.images));
  });

  test('same bytes with 0, 1 and 3 worker threads', async () => {
    const o: LoaderOptions = {
      batchSize: 8,
      imageSize: 12,
      train: true,
      seed: 1,
      epochs: 2,
      transform: { colorJitter: 0.4 },
    };
    const ref = (await collect(synth, { ...o, workers: 0 })).batches.map(strip);
    for (const workers of [1, 3]) {
      const got = (await collect(synth, { ...o, workers, prefetch: 3 })).batches.map(strip);
      expect(got).toEqual(ref);
    }
  });
});

describe('resume', () => {
  test('resuming at a checkpointed next position yields exactly the remaining batches', async () => {
    const o: LoaderOptions = { batchSize: 8, imageSize: 12, train: true, seed: 7, workers: 0, epochs: 3 };
    const full = (await collect(synth, o)).batches.map(strip);
    expect(full.length).toBe(33);
    for (const k of [0, 4, 10, 15]) {
      const rest = (await collect(synth, { ...o, start: full[k].next })).batches.map(strip);
      expect(rest).toEqual(full.slice(k + 1));
    }
    // A start in the dropped tail of an epoch moves to the next epoch.
    const tail = (await collect(synth, { ...o, start: { epoch: 0, index: 85 } }, 1)).batches[0];
    expect(tail.position).toEqual({ epoch: 1, index: 0 });
  });
});

describe('unreadable files', () => {
  test('skipped, replaced deterministically, counted, reported once with their path; same with threads', async () => {
    const warnings: string[] = [];
    const o: LoaderOptions = {
      batchSize: 4,
      imageSize: 16,
      train: false,
      workers: 0,
      epochs: 2,
      onWarning: (m) => warnings.push(m),
    };
    expect(brokenDs.length).toBe(11);
    const { batches, loader } = await collect(brokenDs, o);
    expect(batches.length).toBe(6);
    expect(warnings.length).toBe(2);
    for (const p of broken.corrupt) expect(warnings.filter((w) => w.includes(p)).length).toBe(1);
    expect(warnings.join('\n')).toMatch(
      /truncated\.jpg: (VipsJpeg: premature end of JPEG|corrupt or truncated image data)/i,
    );
    const s = loader.stats();
    expect(s.badFiles).toBe(2);
    expect(s.replaced).toBe(4); // both bad files, in both epochs
    expect(loader.badFiles().sort()).toEqual([...broken.corrupt].sort());
    const bad = new Set(broken.corrupt);
    const S = 16;
    for (const b of batches) {
      for (let k = 0; k < b.size; k++) {
        const i = b.indices[k];
        expect(bad.has(brokenDs.where(i))).toBe(false);
        expect(b.labels[k]).toBe(brokenDs.label(i));
        // The pixels belong to the label (class colours differ; gray images excepted).
        if (/a2\.PNG|b3\.jpg/.test(brokenDs.where(i))) continue;
        const rgb = CLASS_RGB[brokenDs.classNames[b.labels[k]]];
        const base = k * 3 * S * S;
        const mean = (c: number) =>
          b.images.subarray(base + c * S * S, base + (c + 1) * S * S).reduce((t, v) => t + v, 0) / (S * S);
        const std = [0.229, 0.224, 0.225];
        const m = [0.485, 0.456, 0.406];
        for (let c = 0; c < 3; c++) expect(Math.abs((mean(c) * std[c] + m[c]) * 255 - rgb[c])).toBeLessThan(10);
      }
    }
    const threaded: string[] = [];
    const t = await collect(brokenDs, { ...o, workers: 2, onWarning: (m) => threaded.push(m) });
    expect(t.batches.map(strip)).toEqual(batches.map(strip));
    expect(threaded.length).toBe(2);
    expect(t.loader.stats().replaced).toBe(4);
    // One `reported` set shared by the loaders of a run: each file is reported once per run, while
    // every loader still counts the bad files it met.
    const run: string[] = [];
    const reported = new Set<string>();
    const first = await collect(brokenDs, { ...o, epochs: 1, onWarning: (m) => run.push(m), reported });
    const second = await collect(brokenDs, {
      ...o,
      epochs: 2,
      start: { epoch: 1, index: 0 },
      onWarning: (m) => run.push(m),
      reported,
    });
    expect(run.length).toBe(2);
    expect([...reported].sort()).toEqual([...broken.corrupt].sort());
    for (const l of [first.loader, second.loader]) {
      expect(l.stats().badFiles).toBe(2);
      expect(l.badFiles().sort()).toEqual([...broken.corrupt].sort());
    }
  });
});

describe('partly decodable files', () => {
  test('a truncated JPEG whose top half decodes: same bytes with any worker count, in training too', async () => {
    // libvips decodes only the rows a crop needs, so crops in the intact top half of a truncated JPEG
    // succeed and the others fail: whether a sample is replaced must depend on its crop alone, never
    // on which thread met the file before.
    const root = join(tmp.dir, 'halfbad');
    const W = 64;
    const H = 160;
    const noise = Buffer.alloc(W * H * 3);
    for (let k = 0; k < noise.length; k++) noise[k] = (Math.imul(k, 2654435761) >>> 24) & 255; // incompressible: rows fill the file evenly
    const jpg = await sharp(noise, { raw: { width: W, height: H, channels: 3 } })
      .jpeg()
      .toBuffer();
    for (const cls of ['a', 'b']) {
      mkdirSync(join(root, cls), { recursive: true });
      writeFileSync(join(root, cls, 'half.jpg'), jpg.subarray(0, jpg.length >> 1));
      for (let k = 0; k < 3; k++) writeFileSync(join(root, cls, `ok${k}.jpg`), jpg);
    }
    const ds = (await openData(root, { valFraction: 0 })).train;
    const o: LoaderOptions = {
      batchSize: 4,
      imageSize: 8,
      train: true,
      seed: 5,
      epochs: 12,
      onWarning: () => {},
      transform: { scale: [0.05, 0.1] },
    };
    const ref = await collect(ds, { ...o, workers: 0 });
    const replaced = ref.loader.stats().replaced;
    expect(replaced).toBeGreaterThan(0);
    expect(replaced).toBeLessThan(24); // some crops of the half files decode
    for (const workers of [1, 3]) {
      const got = await collect(ds, { ...o, workers });
      expect(got.batches.map(strip)).toEqual(ref.batches.map(strip));
      expect(got.loader.stats().replaced).toBe(replaced);
    }
  });
});

describe('options and lifetime', () => {
  test('clear errors for bad options', async () => {
    const tiny = (await openData('synthetic:5:2', { valFraction: 0 })).train;
    expect(() => new DataLoader(tiny, { batchSize: 8, imageSize: 8, train: true, workers: 0 })).toThrow(
      'synthetic: 5 images of 64x64 px, 2 classes has 5 images, fewer than the batch size 8: no full batch (the last partial batch is dropped in training)',
    );
    expect(() => new DataLoader(tiny, { batchSize: 0, imageSize: 8, train: true, workers: 0 })).toThrow(
      'batchSize must be a positive integer, found 0',
    );
    expect(() => new DataLoader(tiny, { batchSize: 2, imageSize: 8, train: true, workers: -1 })).toThrow(
      'workers must be an integer >= 0, found -1',
    );
    expect(
      () =>
        new DataLoader(tiny, { batchSize: 2, imageSize: 8, train: true, workers: 0, start: { epoch: 0, index: 9 } }),
    ).toThrow('start position must be {epoch >= 0, 0 <= index <= 5} (integers), found {"epoch":0,"index":9}');
  });

  test('a mostly broken dataset stops the loader with a clear error, from worker threads too', async () => {
    const root = join(tmp.dir, 'allbad');
    for (const cls of ['a', 'b']) {
      mkdirSync(join(root, cls), { recursive: true });
      for (let k = 0; k < 3; k++) writeFileSync(join(root, cls, `${k}.jpg`), `not a jpeg ${cls}${k}`);
    }
    const ds = (await openData(root, { valFraction: 0 })).train;
    for (const workers of [0, 2]) {
      const warnings: string[] = [];
      const loader = new DataLoader(ds, {
        batchSize: 2,
        imageSize: 8,
        train: true,
        workers,
        onWarning: (m) => warnings.push(m),
      });
      await expect(loader.next()).rejects.toThrow(
        /data: 16 unreadable images in a row while loading sample \d of folder .*allbad; last: /,
      );
      expect(await loader.next()).toEqual({ done: true, value: undefined }); // closed by the failure
    }
  });

  test('close() while next() waits ends the iteration; next() after close is done', async () => {
    const loader = new DataLoader(synth, { batchSize: 8, imageSize: 12, train: true, workers: 1 });
    const pending = loader.next();
    await loader.close();
    expect(await pending).toEqual({ done: true, value: undefined });
    expect(await loader.next()).toEqual({ done: true, value: undefined });
  });

  test('sharedMemory (the default) hands out the shared buffers, one per batch; false copies; same values', async () => {
    const o: LoaderOptions = { batchSize: 8, imageSize: 12, train: true, seed: 2, workers: 0, epochs: 1 };
    const a = (await collect(synth, { ...o, sharedMemory: false }, 3)).batches;
    const b = (await collect(synth, { ...o, sharedMemory: true }, 3)).batches;
    const c = (await collect(synth, o, 3)).batches;
    for (const x of a) expect(x.images.buffer).toBeInstanceOf(ArrayBuffer);
    expect(b[0].images.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(c[0].images.buffer).toBeInstanceOf(SharedArrayBuffer);
    // Earlier batches stay valid: no buffer is reused while the caller may hold it.
    expect(new Set(c.map((x) => x.images.buffer)).size).toBe(3);
    expect(b.map((x) => Array.from(x.images))).toEqual(a.map((x) => Array.from(x.images)));
    expect(c.map((x) => Array.from(x.images))).toEqual(a.map((x) => Array.from(x.images)));
  });

  test('close ends the worker threads: the process exits, with and without close(), from .ts and compiled .js', () => {
    // Compiled copy of lib/data (what dist/data holds), to run with plain node and no loader hooks.
    const dist = join(tmp.dir, 'dist', 'data');
    for (const folder of ['data', 'util']) {
      const src = join(repo, 'lib', folder);
      mkdirSync(join(tmp.dir, 'dist', folder), { recursive: true });
      for (const f of readdirSync(src).filter((n) => n.endsWith('.ts'))) {
        const out = ts.transpileModule(readFileSync(join(src, f), 'utf8'), {
          compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 },
          fileName: f,
        });
        writeFileSync(join(tmp.dir, 'dist', folder, f.replace(/\.ts$/, '.js')), out.outputText);
      }
    }
    writeFileSync(join(tmp.dir, 'dist', 'package.json'), '{"type":"module"}');
    const script = (lib: string, mode: 'close' | 'break' | 'forget') => `
      import { openData } from ${JSON.stringify(lib + '/open.js')};
      import { DataLoader } from ${JSON.stringify(lib + '/loader.js')};
      const { train } = await openData(${JSON.stringify(broken.root)}, { valFraction: 0 });
      const loader = new DataLoader(train, { batchSize: 4, imageSize: 16, train: true, workers: 2, onWarning: () => {} });
      let n = 0;
      if (${JSON.stringify(mode)} === 'forget') { await loader.next(); n = 1; }
      else for await (const b of loader) { if (++n === 3) break; }
      if (${JSON.stringify(mode)} === 'close') await loader.close();
      console.log('batches', n, 'wait', loader.stats().waitMs >= 0);
    `;
    // sharp must resolve from the compiled copy too.
    symlinkSync(join(repo, 'node_modules'), join(tmp.dir, 'node_modules'));
    const cases: [string, string, string[]][] = [
      ['ts-close', join(repo, 'lib', 'data'), ['--import', 'tsx']],
      ['ts-forget', join(repo, 'lib', 'data'), ['--import', 'tsx']],
      ['js-break', dist, []],
    ];
    for (const [name, lib, flags] of cases) {
      const file = join(tmp.dir, `exit-${name}.mjs`);
      writeFileSync(file, script(lib, name.endsWith('close') ? 'close' : name.endsWith('forget') ? 'forget' : 'break'));
      const r = spawnSync(process.execPath, [...flags, file], { cwd: repo, encoding: 'utf8', timeout: 30_000 });
      expect(r.error, `${name}: ${r.error?.message}`).toBeUndefined(); // a timeout would mean leaked threads
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(r.stdout.trim()).toBe(`batches ${name.endsWith('forget') ? 1 : 3} wait true`);
    }
  });
});
