// Finds and loads the native engine binary.
//
// Two variants exist: `cpu` and `cuda` (CPU + CUDA backends in one file). Searched in order; the first
// that loads wins:
//   1. MEDIC_NATIVE_BINARY (an explicit path, for tests and custom builds)
//   2. build/Release/medic_<variant>.node: a local build (a clone's `npm ci`, `npm run build:native`,
//      or the install step's source build when no prebuilt binary loads)
//   3. prebuilt: for `cpu`, the file node-gyp-build picks from prebuilds/<platform>-<arch>/ (shipped in
//      the npm package, tagged glibc); for `cuda`, the optional package @medic-native/linux-x64-cuda,
//      only at this package's own version.
// Local builds are looked up by exact name because node-gyp-build takes whichever .node file comes
// first in build/Release, and a local build may put both variants there.
// When nothing loads, one error lists every path tried and why, and says what to run.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { NativeBinding } from './binding.js';
import { OP_NAMES } from './ops.js';

export type Variant = 'cpu' | 'cuda';
/** Where the binary came from: shipped (prebuilt), compiled on this machine, or named by the user. */
export type Origin = 'prebuilt' | 'local build' | 'MEDIC_NATIVE_BINARY';

export interface LoadedBinding {
  binding: NativeBinding;
  variant: Variant;
  origin: Origin;
  path: string;
}

/** The optional package that carries the CUDA variant. */
export const CUDA_PACKAGE = '@medic-native/linux-x64-cuda';

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

function packageVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
}

/** The local build of a variant (step 2). */
export function localBuildPath(variant: Variant): string {
  return join(packageRoot, 'build', 'Release', `medic_${variant}.node`);
}

function originOf(path: string): Origin {
  return path.startsWith(join(packageRoot, 'build') + sep) ? 'local build' : 'prebuilt';
}

/** Step 3 for `cpu`: node-gyp-build's pick (platform, arch and libc tags); throws when none fits. */
function prebuiltCpuPath(): string {
  const nodeGypBuild = require('node-gyp-build') as { resolve(dir: string): string };
  return nodeGypBuild.resolve(packageRoot);
}

/** Step 3 for `cuda`: the optional package's binary, or why there is none. */
function prebuiltCudaPath(): { path?: string; why?: string } {
  let pkg: { path: string; version: string };
  try {
    pkg = require(CUDA_PACKAGE) as { path: string; version: string };
  } catch {
    return {
      why: `${CUDA_PACKAGE}: not installed (the optional dependency that carries the CUDA build, for linux-x64 with glibc)`,
    };
  }
  const ours = packageVersion();
  if (pkg.version !== ours)
    return {
      why: `${pkg.path}: ${CUDA_PACKAGE} is version ${pkg.version}, medic-native is ${ours}; reinstall so they match`,
    };
  return { path: pkg.path };
}

class Search {
  readonly tried: string[] = [];
  private readonly seen = new Set<string>();

  /** Loads `path` when it exists and holds `want` (or any variant when want is undefined). */
  attempt(path: string, origin: Origin, want?: Variant): LoadedBinding | undefined {
    if (this.seen.has(path)) return undefined;
    this.seen.add(path);
    const shown = origin === 'MEDIC_NATIVE_BINARY' ? `MEDIC_NATIVE_BINARY=${path}` : path;
    if (!existsSync(path)) {
      this.tried.push(`${shown}: not found`);
      return undefined;
    }
    try {
      const binding = require(path) as NativeBinding;
      const stale = staleOpTable(binding);
      if (stale) {
        this.tried.push(`${shown}: ${stale}`);
        return undefined;
      }
      const variant: Variant = binding.cudaCompiled() ? 'cuda' : 'cpu';
      if (want === 'cuda' && variant !== 'cuda') {
        this.tried.push(`${shown}: loads, but is the CPU-only build`);
        return undefined;
      }
      return { binding, variant, origin, path };
    } catch (err) {
      this.tried.push(`${shown}: ${(err as Error).message.split('\n')[0]}`);
      return undefined;
    }
  }

  prebuiltCpu(): LoadedBinding | undefined {
    let path: string;
    try {
      path = prebuiltCpuPath();
    } catch (err) {
      this.tried.push(`${join(packageRoot, 'prebuilds')} (node-gyp-build): ${(err as Error).message.split('\n')[0]}`);
      return undefined;
    }
    return this.attempt(path, originOf(path));
  }

  prebuiltCuda(): LoadedBinding | undefined {
    const { path, why } = prebuiltCudaPath();
    if (!path) {
      this.tried.push(why!);
      return undefined;
    }
    return this.attempt(path, 'prebuilt', 'cuda');
  }
}

function notFound(prefer: Variant, tried: string[]): Error {
  const where = `${process.platform}-${process.arch}, Node ${process.version}`;
  const advice =
    prefer === 'cuda'
      ? `The CUDA build comes with the optional package ${CUDA_PACKAGE} (linux-x64, glibc) or from a source build on a\n` +
        'machine with nvcc: `npm_config_build_from_source=true npm rebuild medic-native` (needs cmake >= 3.18, a C++17 compiler\n' +
        'and nvcc).'
      : 'In an app that depends on medic-native, run `npm rebuild medic-native`: it uses the prebuilt engine when it loads\n' +
        'and otherwise builds one from source (needs cmake >= 3.18 and a C++17 compiler; npm >= 12 runs it only for an approved\n' +
        'package: `npm approve-scripts medic-native` first). In a clone of medic-native: `npm run build:native`.';
  return new Error(
    `medic-native: could not load the native engine (${prefer} variant; ${where}). Tried:\n  ${tried.join('\n  ')}\n${advice}`,
  );
}

const cache = new Map<string, LoadedBinding>();

/**
 * Load a binary. `prefer`: 'cpu' loads the CPU variant (falling back to the CUDA one, which also
 * runs on the CPU); 'cuda' requires the CUDA variant.
 */
export function loadBinding(prefer: Variant = 'cpu'): LoadedBinding {
  const explicit = process.env.MEDIC_NATIVE_BINARY;
  const key = `${prefer}:${explicit ?? ''}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const s = new Search();
  const steps: (() => LoadedBinding | undefined)[] = [];
  if (explicit) steps.push(() => s.attempt(explicit, 'MEDIC_NATIVE_BINARY', prefer === 'cuda' ? 'cuda' : undefined));
  if (prefer === 'cpu')
    steps.push(
      () => s.attempt(localBuildPath('cpu'), 'local build'),
      () => s.prebuiltCpu(),
    );
  steps.push(
    () => s.attempt(localBuildPath('cuda'), 'local build', 'cuda'),
    () => s.prebuiltCuda(),
  );
  let loaded: LoadedBinding | undefined;
  for (const step of steps) if ((loaded = step())) break;
  if (!loaded) throw notFound(prefer, s.tried);
  cache.set(key, loaded);
  return loaded;
}

/** A path for messages: relative to the package when inside it. */
export function shortPath(path: string): string {
  const r = relative(packageRoot, path);
  return r.startsWith('..') ? path : r;
}

/**
 * The binding interface this JavaScript expects (native/napi/addon.cpp's abiVersion): raised whenever a
 * binding function is added or changes its arguments, so that an older binary is refused at load.
 */
export const ABI_VERSION = 2;

/**
 * Why a binary does not belong with this JavaScript, or null when its op table is ours. A binary left
 * from older sources (a local build not redone after a pull) loads and runs, but ops that changed meaning
 * or are missing give wrong numbers or fail mid-run: its op list, compiled from ops.h, says so first.
 */
export function staleOpTable(b: Partial<Pick<NativeBinding, 'opNames' | 'abiVersion'>>): string | null {
  const names: string[] = typeof b.opNames === 'function' ? b.opNames() : [];
  const n = Math.max(names.length, OP_NAMES.length);
  let i = 0;
  while (i < n && names[i] === OP_NAMES[i]) i++;
  if (i < n)
    return `built from other sources than this package's JavaScript: its op table has ${names.length} ops, ours ${OP_NAMES.length}, and they differ at #${i} ('${names[i] ?? '(none)'}' against '${OP_NAMES[i] ?? '(none)'}'); rebuild it`;
  if (b.abiVersion !== ABI_VERSION)
    return `built from other sources than this package's JavaScript: its binding interface is version ${b.abiVersion ?? '(none)'}, ours ${ABI_VERSION}; rebuild it`;
  return null;
}
