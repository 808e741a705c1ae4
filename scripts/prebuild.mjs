#!/usr/bin/env node
// `npm run prebuild`: the release build of both binaries and both npm packages (docs/RELEASE.md).
//
//   1. CPU engine: prebuildify (Node-API) builds it with CMake (MEDIC_PORTABLE, through
//      scripts/prebuild-cmake.mjs) into prebuilds/linux-x64/medic-native.glibc.node, where
//      node-gyp-build finds it.
//   2. CUDA engine: packages/linux-x64-cuda/medic_cuda.node (static cudart, SASS sm_80 + sm_90, PTX
//      compute_90), the @medic-native/linux-x64-cuda package.
//   3. Checks every binary: glibc and libstdc++ floors (objdump -T), the GPU code in the CUDA one, no
//      shared cudart, and that it loads in a fresh Node and reports the expected variant.
//   4. Clean TypeScript build, then `npm pack` of both packages into build-release/.
//
// Flags: --skip-cuda (CPU only, for machines without nvcc; not a release), --no-pack.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { atMost, fatbinEntries, glibcRequirements, neededLibraries } from './lib/binary-check.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const skipCuda = process.argv.includes('--skip-cuda');
const pack = !process.argv.includes('--no-pack');
const tuple = `${process.platform}-${process.arch}`;
const cpuFile = join(root, 'prebuilds', tuple, 'medic-native.glibc.node');
const cudaPkg = join(root, 'packages', 'linux-x64-cuda');
const cudaFile = join(cudaPkg, 'medic_cuda.node');
const releaseDir = join(root, 'build-release');
// The floors we promise (docs/RELEASE.md). CPU: 2.34, since the engine loads MPI and NCCL at run time
// (dlopen, dlsym, dlclose, dlerror) and pthread_once, which glibc 2.34 versioned anew when it merged
// libdl and libpthread into libc; the rest of the engine would run on 2.27. CUDA:
// the static cudart's pthread, dl, sem and shm calls bind to the versions of the glibc it is linked
// against, 2.34 for every glibc >= 2.34 (the one that merged libpthread and libdl into libc); an older
// floor needs a build machine with an older glibc.
const GLIBC_MAX = { cpu: '2.34', cuda: '2.34' };
const GLIBCXX_MAX = '3.4.22';
const CUDA_ARCHS = '80-real;90-real;90-virtual';

function fail(msg) {
  console.error(`prebuild: ${msg}`);
  process.exit(1);
}

function run(cmd, args, opts = {}) {
  console.log(`prebuild: $ ${[cmd, ...args].join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts });
  if (r.status !== 0) fail(`${cmd} ${args[0] ?? ''} failed (exit ${r.status ?? r.signal})`);
}

function mb(file) {
  return `${(statSync(file).size / 2 ** 20).toFixed(1)} MB`;
}

function checkVersions() {
  const main = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const cuda = JSON.parse(readFileSync(join(cudaPkg, 'package.json'), 'utf8'));
  const pinned = main.optionalDependencies?.[cuda.name];
  if (cuda.version !== main.version || pinned !== main.version) {
    fail(
      `versions differ: medic-native ${main.version}, ${cuda.name} ${cuda.version}, pinned as optional dependency '${pinned}'; all three must be equal`,
    );
  }
}

function buildCpu() {
  rmSync(join(root, 'prebuilds'), { recursive: true, force: true });
  const work = join(root, 'build', 'prebuild', 'cpu');
  mkdirSync(work, { recursive: true });
  const prebuildify = require.resolve('prebuildify/bin.js');
  run(process.execPath, [
    prebuildify,
    '--napi',
    '--strip',
    '--tag-libc',
    '--name',
    'medic-native',
    '--cwd',
    work,
    '--out',
    root,
    '--node-gyp',
    join(root, 'scripts', 'prebuild-cmake.mjs'),
  ]);
}

function buildCuda() {
  const work = join(root, 'build', 'prebuild', 'cuda');
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  run(
    process.execPath,
    [
      cmakeJs,
      'compile',
      '--directory',
      root,
      '--out',
      work,
      '--target',
      'medic_cuda',
      '--CDMEDIC_CUDA=ON',
      '--CDMEDIC_PORTABLE=ON',
      `--CDCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHS}`,
    ],
    {
      env: { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: String(availableParallelism()) },
    },
  );
  copyFileSync(join(work, 'Release', 'medic_cuda.node'), cudaFile);
  run('strip', ['--strip-all', cudaFile]);
}

/** Loads the binary in a fresh Node (as a user's app would) and returns what it reports. */
function probe(file) {
  const code = `const b = require(${JSON.stringify(file)}); console.log(JSON.stringify({ cuda: b.cudaCompiled(), ops: b.opNames().length, kernels: b.cudaKernels().length, cpu: b.cpuFeatures(), devices: b.cudaDeviceCount() }))`;
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8' });
  if (r.status !== 0) fail(`${file} does not load: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout);
}

function checkBinary(file, variant) {
  const req = glibcRequirements(file);
  console.log(
    `prebuild: ${file} (${mb(file)}): needs glibc >= ${req.glibc}, libstdc++ GLIBCXX >= ${req.glibcxx ?? 'none'}; links ${neededLibraries(file).join(', ')}`,
  );
  if (!atMost(req.glibc, GLIBC_MAX[variant])) {
    fail(
      `${file} needs GLIBC_${req.glibc} (${req.symbols[`GLIBC_${req.glibc}`].join(', ')}); the ${variant} floor is ${GLIBC_MAX[variant]} (see native/core/glibc_floor.h)`,
    );
  }
  if (!atMost(req.glibcxx, GLIBCXX_MAX))
    fail(
      `${file} needs GLIBCXX_${req.glibcxx} (${req.symbols[`GLIBCXX_${req.glibcxx}`].join(', ')}); the floor is ${GLIBCXX_MAX}`,
    );
  const p = probe(file);
  if (p.cuda !== (variant === 'cuda'))
    fail(`${file} reports cudaCompiled() = ${p.cuda}, expected the ${variant} variant`);
  console.log(`prebuild: ${file} loads: ${p.ops} ops, ${p.kernels} CUDA kernels, CPU features ${p.cpu}`);
  if (variant !== 'cuda') return;
  if (neededLibraries(file).some((l) => l.startsWith('libcudart')))
    fail(`${file} links libcudart dynamically; expected the static cudart`);
  const code = fatbinEntries(file).map((e) => `${e.kind === 'sass' ? 'sm' : 'compute'}_${e.arch}`);
  console.log(`prebuild: GPU code in ${file}: ${code.join(', ')}`);
  for (const want of ['sm_80', 'sm_90', 'compute_90'])
    if (!code.includes(want)) fail(`${file} has no ${want} code (found: ${code.join(', ') || 'none'})`);
}

function packAll() {
  rmSync(releaseDir, { recursive: true, force: true });
  mkdirSync(releaseDir, { recursive: true });
  // A clean TypeScript build: files of removed modules must not linger in dist/.
  rmSync(join(root, 'dist'), { recursive: true, force: true });
  run('npm', ['pack', '--pack-destination', releaseDir]);
  if (!skipCuda) run('npm', ['pack', '--pack-destination', releaseDir], { cwd: cudaPkg });
}

if (process.platform !== 'linux' || process.arch !== 'x64')
  fail(`release binaries are built on linux-x64, this is ${tuple}`);
checkVersions();
buildCpu();
checkBinary(cpuFile, 'cpu');
if (!skipCuda) {
  buildCuda();
  checkBinary(cudaFile, 'cuda');
}
if (pack) packAll();
console.log(
  `prebuild: done${skipCuda ? ' (CPU only: --skip-cuda is not a release)' : ''}${pack ? `; packages in ${releaseDir}` : ''}`,
);
