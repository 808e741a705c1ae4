// CMakeLists.txt (cmake-js) and binding.gyp (node-gyp) must build the CPU backend from the same sources.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { packageRoot } from '../../lib/engine/loader.js';

function cmakeList(text: string, name: string): string[] {
  const m = new RegExp(`set\\(${name}\\s+([^)]*)\\)`).exec(text);
  if (!m) throw new Error(`CMakeLists.txt: no set(${name} ...)`);
  return m[1].split(/\s+/).filter(Boolean);
}

describe('build source lists', () => {
  const cmake = readFileSync(join(packageRoot, 'CMakeLists.txt'), 'utf8');
  const gyp = JSON.parse(readFileSync(join(packageRoot, 'binding.gyp'), 'utf8')) as {
    targets: { target_name: string; sources: string[] }[];
  };
  const target = gyp.targets.find((t) => t.target_name === 'medic_cpu');

  it('binding.gyp builds medic_cpu from exactly the CMake CPU sources', () => {
    expect(target).toBeDefined();
    const fromCmake = [...cmakeList(cmake, 'MEDIC_CPU_SOURCES'), ...cmakeList(cmake, 'MEDIC_CPU_ONLY_SOURCES')];
    expect([...target!.sources].sort()).toEqual([...fromCmake].sort());
    expect(fromCmake.length).toBeGreaterThan(10);
  });

  it('the CUDA target adds only .cu sources and every listed file exists', () => {
    const cuda = cmakeList(cmake, 'MEDIC_CUDA_SOURCES');
    expect(cuda.length).toBeGreaterThan(0);
    expect(cuda.every((f) => f.endsWith('.cu'))).toBe(true);
    for (const f of [...cmakeList(cmake, 'MEDIC_CPU_SOURCES'), ...cuda])
      expect(() => readFileSync(join(packageRoot, f))).not.toThrow();
  });

  it('the static engine library for the C++ harness lists the same kernels', () => {
    const m = /add_library\(medic_engine_cpu STATIC EXCLUDE_FROM_ALL([^)]*)\)/.exec(cmake);
    expect(m).not.toBeNull();
    const engineLib = m![1].split(/\s+/).filter(Boolean);
    const expected = cmakeList(cmake, 'MEDIC_CPU_SOURCES').filter((f) => !f.startsWith('native/napi/'));
    expect([...engineLib].sort()).toEqual([...expected].sort());
  });
});
