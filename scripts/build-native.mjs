#!/usr/bin/env node
// Builds the native addon from source with cmake-js into build/Release (`npm run build:native`, and
// scripts/install.mjs when no prebuilt binary loads or npm_config_build_from_source asks for it).
//
// - MEDIC_CUDA=AUTO|ON|OFF selects the CUDA backend (AUTO: built when nvcc is found).
// - Never downloads anything: package.json's "binary.napi_versions" makes cmake-js take the Node-API
//   headers from the node-api-headers package.
// - --emu builds the CUDA sources for the CPU emulator instead (native/tests/emu) into build/emu:
//   build/emu/Release/medic_cuda_emu.node and build/emu/medic_parity_emu (`npm run build:emu`).
import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const emu = process.argv.includes('--emu');

const require = createRequire(import.meta.url);
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const cuda = (process.env.MEDIC_CUDA ?? 'AUTO').toUpperCase();
if (!['AUTO', 'ON', 'OFF'].includes(cuda)) {
  console.error(`medic-native: MEDIC_CUDA must be AUTO, ON or OFF, got '${process.env.MEDIC_CUDA}'`);
  process.exit(2);
}
const env = { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: String(availableParallelism()) };
const args = emu
  ? [
      cmakeJs,
      'compile',
      '--directory',
      root,
      '--CDMEDIC_CUDA=OFF',
      '--CDMEDIC_CUDA_EMU=ON',
      '--out',
      join(root, 'build', 'emu'),
    ]
  : [cmakeJs, 'compile', '--directory', root, `--CDMEDIC_CUDA=${cuda}`];
if (!emu && process.env.MEDIC_BUILD_DIR) args.push('--out', process.env.MEDIC_BUILD_DIR);
console.log(
  emu
    ? 'medic-native: building the CUDA sources for the CPU emulator (build/emu) ...'
    : `medic-native: building the native engine (MEDIC_CUDA=${cuda}) ...`,
);
const r = spawnSync(process.execPath, args, { stdio: 'inherit', env, cwd: root });
if (r.status !== 0) {
  console.error('medic-native: the native build failed (see above). It needs cmake >= 3.18 and a C++17 compiler;');
  console.error('  set MEDIC_CUDA=OFF to skip the CUDA backend.');
  process.exit(r.status ?? 1);
}
