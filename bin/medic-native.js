#!/usr/bin/env node
// The CLI shim: runs the compiled CLI (dist/, built by `npm ci` / `npm run build:ts`).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// The data loader decodes with sharp on libuv's thread pool (4 threads by default, fixed at first use):
// size it to the machine before anything touches it.
process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, 2 * (await import('node:os')).availableParallelism()));

// `medic-native ... | head` closes the pipe early: that is not an error.
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const entry = join(root, 'dist', 'cli', 'index.js');
if (!existsSync(entry)) {
  console.error(`medic-native: ${entry} is missing; build the TypeScript with \`npm run build:ts\` (npm ci does it).`);
  process.exit(1);
}
const { main } = await import(pathToFileURL(entry).href);
process.exitCode = await main(process.argv);
