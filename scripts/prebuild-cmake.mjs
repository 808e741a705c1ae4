#!/usr/bin/env node
// prebuildify's build command for medic-native (scripts/prebuild.mjs passes it as --node-gyp).
//
// prebuildify drives node-gyp by default, and node-gyp downloads Node's headers; our engine is built by
// CMake (cmake-js, Node-API headers from the node-api-headers package, nothing downloaded). prebuildify
// calls this as `<this> rebuild --target=<node> --release ...` in its working folder and then takes the
// one .node file in ./build/Release: this builds the portable CPU engine there. The Node version does
// not matter (Node-API: one binary serves every Node >= 20).
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
if (process.argv[2] !== 'rebuild') {
  console.error(`prebuild-cmake: expected 'rebuild' from prebuildify, got: ${process.argv.slice(2).join(' ')}`);
  process.exit(2);
}
const cmakeJs = createRequire(import.meta.url).resolve('cmake-js/bin/cmake-js');
const out = resolve('build');
const args = [cmakeJs, 'compile', '--directory', root, '--out', out, '--CDMEDIC_CUDA=OFF', '--CDMEDIC_PORTABLE=ON'];
console.log(`prebuild-cmake: building the portable CPU engine into ${out}/Release`);
const r = spawnSync(process.execPath, args, {
  stdio: 'inherit',
  cwd: root,
  env: { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: String(availableParallelism()) },
});
process.exit(r.status ?? 1);
