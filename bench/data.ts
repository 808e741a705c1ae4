// Data pipeline throughput: decode + RandomResizedCrop + flip + normalise, images/s per worker count.
//
//   npx tsx bench/data.ts                         # 512 JPEGs (256..500 px), 224 px output, 1 and 2 workers
//   npx tsx bench/data.ts --n 512 --workers 0,1,2,4 --size 224 --batch 32 --epochs 2 --jitter 0.4 --json out.json
//
// The images are generated with sharp in a temp folder (smooth colour fields + noise, JPEG quality 90,
// like photos in size and decode cost), opened as an image folder and read through DataLoader in
// training mode. The first batch of each run (worker start-up) is excluded from the rate. workers 0
// decodes in the main thread, for reference.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';

import sharp from 'sharp';

import { DataLoader } from '../lib/data/loader.js';
import { openData } from '../lib/data/open.js';
import { Rng } from '../lib/util/rng.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : def;
}

async function makeJpegs(dir: string, n: number, classes: number): Promise<number> {
  let bytes = 0;
  for (let c = 0; c < classes; c++) mkdirSync(join(dir, `c${c}`), { recursive: true });
  const one = async (k: number) => {
    const rng = new Rng(42, k);
    const w = 256 + rng.int(245);
    const h = 256 + rng.int(245);
    const px = Buffer.alloc(w * h * 3);
    const f = [rng.range(0.01, 0.05), rng.range(0.01, 0.05), rng.range(0.01, 0.05)];
    const ph = [rng.range(0, 6), rng.range(0, 6), rng.range(0, 6)];
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const o = (y * w + x) * 3;
        for (let c = 0; c < 3; c++) {
          const v =
            128 +
            90 * Math.sin(f[c] * x + ph[c]) * Math.cos(f[(c + 1) % 3] * y) +
            (((x * 7 + y * 13 + k) * 2654435761) % 17) -
            8;
          px[o + c] = v < 0 ? 0 : v > 255 ? 255 : v;
        }
      }
    }
    const jpg = await sharp(px, { raw: { width: w, height: h, channels: 3 } })
      .jpeg({ quality: 90 })
      .toBuffer();
    writeFileSync(join(dir, `c${k % classes}`, `img${k}.jpg`), jpg);
    bytes += jpg.length;
  };
  for (let k = 0; k < n; k += 8) await Promise.all(Array.from({ length: Math.min(8, n - k) }, (_, j) => one(k + j)));
  return bytes;
}

interface Row {
  workers: number;
  images: number;
  seconds: number;
  imagesPerSec: number;
  perWorker: number;
  meanWaitMs: number;
}

async function main(): Promise<void> {
  const n = Number(arg('n', '512'));
  const size = Number(arg('size', '224'));
  const batch = Number(arg('batch', '32'));
  const epochs = Number(arg('epochs', '2'));
  const jitter = Number(arg('jitter', '0'));
  const workerCounts = arg('workers', '1,2').split(',').map(Number);
  const json = arg('json', '');
  // sharp decodes on libuv's pool, shared by all worker threads: size it before anything uses it.
  process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, 2 * Math.max(...workerCounts)));

  const dir = mkdtempSync(join(tmpdir(), 'medic-bench-data-'));
  try {
    const t0 = performance.now();
    const bytes = await makeJpegs(dir, n, 4);
    console.log(
      `generated ${n} JPEGs (256..500 px, ${(bytes / n / 1024).toFixed(0)} KiB avg) in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
    console.log(
      `cpu: ${cpus()[0]?.model ?? '?'}, ${availableParallelism()} cores; UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE}`,
    );
    const { train } = await openData(dir, { valFraction: 0 });
    const rows: Row[] = [];
    for (const workers of workerCounts) {
      const loader = new DataLoader(train, {
        batchSize: batch,
        imageSize: size,
        train: true,
        seed: 0,
        workers,
        prefetch: 2,
        epochs,
        transform: { colorJitter: jitter },
      });
      let images = 0;
      let waits = 0;
      let batches = 0;
      let start = 0;
      for await (const b of loader) {
        if (batches === 0)
          start = performance.now(); // rate excludes start-up and the first batch
        else {
          images += b.size;
          waits += b.waitMs;
        }
        batches++;
      }
      const seconds = (performance.now() - start) / 1000;
      const rate = images / seconds;
      rows.push({
        workers,
        images,
        seconds,
        imagesPerSec: rate,
        perWorker: rate / Math.max(workers, 1),
        meanWaitMs: waits / Math.max(batches - 1, 1),
      });
    }
    console.log(
      `\ndecode + RandomResizedCrop(${size}) + flip${jitter ? ` + jitter ${jitter}` : ''} + normalise, batch ${batch}, float32 CHW output`,
    );
    console.log('workers  images  seconds  images/s  per worker  wait/batch ms');
    for (const r of rows) {
      console.log(
        `${String(r.workers).padStart(7)}  ${String(r.images).padStart(6)}  ${r.seconds.toFixed(2).padStart(7)}  ${r.imagesPerSec.toFixed(1).padStart(8)}  ${r.perWorker.toFixed(1).padStart(10)}  ${r.meanWaitMs.toFixed(1).padStart(13)}`,
      );
    }
    if (json) {
      writeFileSync(
        json,
        JSON.stringify({ n, size, batch, epochs, jitter, cores: availableParallelism(), rows }, null, 2),
      );
      console.log(`wrote ${json}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
