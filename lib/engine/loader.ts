// Finds and loads the native engine binary.
//
// Two variants exist: `cpu` (always built) and `cuda` (CPU + CUDA backends, built when nvcc was found).
// They live in separate files (node-gyp-build cannot tell same-folder variants apart), searched in order:
//   1. MEDIC_NATIVE_BINARY (an explicit path, for tests and custom builds)
//   2. build/Release/medic_<variant>.node (a local cmake-js or node-gyp build)
//   3. prebuilds/<platform>-<arch>/<variant>/medic_<variant>.node (shipped binaries)
// When nothing loads, one error lists every path tried and why it failed.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { NativeBinding } from './binding.js';

export type Variant = 'cpu' | 'cuda';

export interface LoadedBinding {
  binding: NativeBinding;
  variant: Variant;
  path: string;
}

const require = createRequire(import.meta.url);

/** The package root (holds package.json), from lib/ when run from source or dist/ when built. */
export const packageRoot = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'CMakeLists.txt'))) return dir;
    dir = dirname(dir);
  }
  return join(dirname(fileURLToPath(import.meta.url)), '..');
})();

export function candidatePaths(variant: Variant): string[] {
  const file = `medic_${variant}.node`;
  return [
    join(packageRoot, 'build', 'Release', file),
    join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`, variant, file),
  ];
}

const cache = new Map<string, LoadedBinding>();

/**
 * Load a binary. `prefer`: 'cpu' loads the CPU variant (falling back to the CUDA one, which also
 * runs on the CPU); 'cuda' requires the CUDA variant.
 */
export function loadBinding(prefer: Variant = 'cpu'): LoadedBinding {
  const key = `${prefer}:${process.env.MEDIC_NATIVE_BINARY ?? ''}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const tried: string[] = [];
  const attempt = (path: string, variant: Variant): LoadedBinding | undefined => {
    if (!existsSync(path)) {
      tried.push(`${path}: not found`);
      return undefined;
    }
    try {
      const binding = require(path) as NativeBinding;
      const actual: Variant = binding.cudaCompiled() ? 'cuda' : 'cpu';
      if (variant === 'cuda' && actual !== 'cuda') {
        tried.push(`${path}: loaded, but built without CUDA`);
        return undefined;
      }
      return { binding, variant: actual, path };
    } catch (err) {
      tried.push(`${path}: ${(err as Error).message.split('\n')[0]}`);
      return undefined;
    }
  };
  let loaded: LoadedBinding | undefined;
  const explicit = process.env.MEDIC_NATIVE_BINARY;
  if (explicit) loaded = attempt(explicit, prefer);
  const order: Variant[] = prefer === 'cuda' ? ['cuda'] : ['cpu', 'cuda'];
  for (const v of order) {
    if (loaded) break;
    for (const p of candidatePaths(v)) {
      loaded = attempt(p, prefer === 'cuda' ? 'cuda' : v);
      if (loaded) break;
    }
  }
  if (!loaded) {
    throw new Error(
      `medic-native: could not load the native engine (${prefer} variant). Tried:\n  ${tried.join('\n  ')}\n` +
        `Build it with \`npm run build:native\` (needs cmake >= 3.18 and a C++17 compiler; MEDIC_CUDA=OFF skips CUDA).`,
    );
  }
  cache.set(key, loaded);
  return loaded;
}
