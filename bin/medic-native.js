#!/usr/bin/env node
// The CLI shim: runs the compiled CLI (dist/, built by `npm ci` / `npm run build:ts`).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const entry = join(root, 'dist', 'cli', 'index.js');
if (!existsSync(entry)) {
  console.error(`medic-native: ${entry} is missing; build the TypeScript with \`npm run build:ts\` (npm ci does it).`);
  process.exit(1);
}
const { main } = await import(pathToFileURL(entry).href);
process.exitCode = await main(process.argv);
