#!/usr/bin/env node
// clang-format over the C++/CUDA sources of native/, when the repository has a .clang-format:
//   node .ci/clang-format.mjs          check (clang-format --dry-run --Werror): fails on any difference
//   node .ci/clang-format.mjs --fix    rewrite the files in place
// Used by `npm run format:check` and `npm run format`. Without a .clang-format it does nothing (and
// says so); with one, a missing clang-format binary is an error (Debian: apt-get install clang-format).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const EXTENSIONS = ['.h', '.hpp', '.c', '.cc', '.cpp', '.cu', '.cuh', '.inc'];
const fix = process.argv.includes('--fix');

if (!existsSync(join(root, '.clang-format'))) {
  console.log('clang-format: no .clang-format in the repository, native/ not checked');
  process.exit(0);
}

function sources(dir) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (EXTENSIONS.some((x) => e.name.endsWith(x))) out.push(p);
  }
  return out.sort();
}

const files = sources(join(root, 'native'));
const args = fix ? ['-i', ...files] : ['--dry-run', '--Werror', ...files];
const r = spawnSync(process.env.CLANG_FORMAT ?? 'clang-format', args, { cwd: root, stdio: 'inherit' });
if (r.error) {
  console.error(
    `clang-format: could not run it (${r.error.message}); install it (Debian: apt-get install clang-format) or set CLANG_FORMAT`,
  );
  process.exit(2);
}
if (r.status !== 0) {
  console.error(
    `clang-format: ${fix ? 'failed' : 'native/ sources differ from .clang-format (npm run format fixes them)'}`,
  );
  process.exit(r.status ?? 1);
}
console.log(`clang-format: ${files.length} native/ files ${fix ? 'formatted' : 'conform'}`);
