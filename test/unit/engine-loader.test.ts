// The binary search of lib/engine/loader.ts in an installed-package layout: prebuilt CPU engine
// through node-gyp-build, a local build before it, the CUDA package only at our version, and the
// message when nothing loads (issue 13: it told app users to run `npm run build:native`, a script
// their app does not have). Each case runs the loader (transpiled to JS, as in dist/) in a fresh Node
// over a scratch package folder.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { ABI_VERSION, localBuildPath, packageRoot, staleOpTable } from '../../lib/engine/loader.js';
import { OP_NAMES } from '../../lib/engine/ops.js';

let pkg: string;

function load(prefer: 'cpu' | 'cuda'): { ok: boolean; out: string } {
  const script = join(pkg, 'probe.mjs');
  writeFileSync(
    script,
    `import { loadBinding } from './lib/engine/loader.js';
try { const l = loadBinding('${prefer}'); console.log(JSON.stringify({ variant: l.variant, origin: l.origin, path: l.path })); }
catch (e) { console.log(e.message); process.exitCode = 3; }`,
  );
  const env = { ...process.env };
  delete env.MEDIC_NATIVE_BINARY;
  const r = spawnSync(process.execPath, [script], { cwd: pkg, encoding: 'utf8', env });
  return { ok: r.status === 0, out: r.stdout + r.stderr };
}

beforeAll(() => {
  pkg = mkdtempSync(join(tmpdir(), 'medic-loader-'));
  mkdirSync(join(pkg, 'lib', 'engine'), { recursive: true });
  const source = readFileSync(join(packageRoot, 'lib', 'engine', 'loader.ts'), 'utf8');
  const js = ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  }).outputText;
  writeFileSync(join(pkg, 'lib', 'engine', 'loader.js'), js);
  const ops = readFileSync(join(packageRoot, 'lib', 'engine', 'ops.ts'), 'utf8');
  writeFileSync(
    join(pkg, 'lib', 'engine', 'ops.js'),
    ts.transpileModule(ops, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } })
      .outputText,
  );
  writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'medic-native', version: '9.8.7', type: 'module' }));
  writeFileSync(join(pkg, 'CMakeLists.txt'), '');
  mkdirSync(join(pkg, 'node_modules', '@medic-native'), { recursive: true });
  symlinkSync(join(packageRoot, 'node_modules', 'node-gyp-build'), join(pkg, 'node_modules', 'node-gyp-build'));
});

afterAll(() => rmSync(pkg, { recursive: true, force: true }));

describe('engine loader', () => {
  test('nothing installed: one error listing every place tried, telling an app user to run npm rebuild medic-native', () => {
    const r = load('cpu');
    expect(r.ok).toBe(false);
    expect(r.out).toContain('could not load the native engine (cpu variant');
    expect(r.out).toContain(`${join(pkg, 'build', 'Release', 'medic_cpu.node')}: not found`);
    expect(r.out).toMatch(/prebuilds \(node-gyp-build\): No native build was found for platform=linux arch=x64/);
    expect(r.out).toContain('@medic-native/linux-x64-cuda: not installed');
    expect(r.out).toContain('run `npm rebuild medic-native`');
    expect(r.out).not.toContain('npm run build:native`:');
  });

  test('the prebuilt CPU engine is found by node-gyp-build; a local build wins over it', () => {
    mkdirSync(join(pkg, 'prebuilds', 'linux-x64'), { recursive: true });
    const prebuilt = join(pkg, 'prebuilds', 'linux-x64', 'medic-native.glibc.node');
    copyFileSync(localBuildPath('cpu'), prebuilt);
    expect(JSON.parse(load('cpu').out)).toEqual({ variant: 'cpu', origin: 'prebuilt', path: prebuilt });
    // A musl-only prebuild does not fit this glibc machine.
    rmSync(prebuilt);
    copyFileSync(localBuildPath('cpu'), join(pkg, 'prebuilds', 'linux-x64', 'medic-native.musl.node'));
    expect(load('cpu').out).toMatch(/No native build was found/);
    copyFileSync(localBuildPath('cpu'), prebuilt);
    mkdirSync(join(pkg, 'build', 'Release'), { recursive: true });
    const local = join(pkg, 'build', 'Release', 'medic_cpu.node');
    copyFileSync(localBuildPath('cpu'), local);
    expect(JSON.parse(load('cpu').out)).toEqual({ variant: 'cpu', origin: 'local build', path: local });
    rmSync(join(pkg, 'build'), { recursive: true });
  });

  test('cuda: the optional package is used only at our version, and a CPU-only binary is refused', () => {
    const cudaPkg = join(pkg, 'node_modules', '@medic-native', 'linux-x64-cuda');
    mkdirSync(cudaPkg, { recursive: true });
    // A stand-in for the package: its binary is the CPU build, which --device cuda must refuse.
    copyFileSync(localBuildPath('cpu'), join(cudaPkg, 'medic_cuda.node'));
    const index = (version: string) =>
      `module.exports = { path: require('node:path').join(__dirname, 'medic_cuda.node'), variant: 'cuda', version: '${version}' };`;
    writeFileSync(
      join(cudaPkg, 'package.json'),
      JSON.stringify({ name: '@medic-native/linux-x64-cuda', version: '1.0.0', main: 'index.js' }),
    );
    writeFileSync(join(cudaPkg, 'index.js'), index('1.0.0'));
    let r = load('cuda');
    expect(r.ok).toBe(false);
    expect(r.out).toContain(
      '@medic-native/linux-x64-cuda is version 1.0.0, medic-native is 9.8.7; reinstall so they match',
    );
    expect(r.out).toContain('npm_config_build_from_source=true npm rebuild medic-native');
    writeFileSync(join(cudaPkg, 'index.js'), index('9.8.7'));
    r = load('cuda');
    expect(r.out).toContain(`${join(cudaPkg, 'medic_cuda.node')}: loads, but is the CPU-only build`);
    rmSync(cudaPkg, { recursive: true });
  });
});

describe('a binary from other sources', () => {
  test("is named with where its op table differs from this package's (a stale local build ran silently wrong before)", () => {
    expect(staleOpTable({ opNames: () => [...OP_NAMES], abiVersion: ABI_VERSION })).toBeNull();
    const older = OP_NAMES.slice(0, 33);
    expect(staleOpTable({ opNames: () => older, abiVersion: ABI_VERSION })).toBe(
      `built from other sources than this package's JavaScript: its op table has 33 ops, ours ${OP_NAMES.length}, and they differ at #33 ('(none)' against '${OP_NAMES[33]}'); rebuild it`,
    );
    expect(staleOpTable({})).toMatch(/its op table has 0 ops/); // a binary from before opNames()
    // same ops, an older binding interface (before clusterPartsAsync): its functions would be missing mid-run
    expect(staleOpTable({ opNames: () => [...OP_NAMES], abiVersion: 1 })).toBe(
      `built from other sources than this package's JavaScript: its binding interface is version 1, ours ${ABI_VERSION}; rebuild it`,
    );
  });
});
