#!/usr/bin/env node
// npm's install step for medic-native (`npm install`, `npm ci`, `npm rebuild medic-native`).
//
// 1. Looks for an engine binary that loads here, in the loader's order (lib/engine): a local build
//    (build/Release/medic_cpu.node), then the prebuilt CPU engine that node-gyp-build picks from
//    prebuilds/<platform>-<arch>/. Each is loaded in a fresh Node; the first that loads ends the
//    install: nothing is compiled.
// 2. Otherwise, or when a source build is asked for (the environment variable
//    npm_config_build_from_source=true, the node-pre-gyp / sharp convention; npm <= 11 also sets it
//    from `--build-from-source`, npm 12 rejects that flag), it builds from the
//    shipped sources (scripts/build-native.mjs: cmake-js, MEDIC_CUDA=AUTO|ON|OFF), after checking the
//    toolchain: when something is missing, one message says what, what was tried, and what to run.
// A clone of the repository has no prebuilds/, so `npm ci` there builds from source as before.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const say = (line) => console.log(`medic-native: ${line}`);

function forced() {
  const v = (process.env.npm_config_build_from_source ?? '').toLowerCase();
  return process.argv.includes('--build-from-source') || !['', 'false', '0'].includes(v);
}

/** Loads `file` in a fresh Node: null when it works, else the first line of the error. */
function loadError(file) {
  const code = `const b = require(${JSON.stringify(file)}); if (!(b.opNames().length > 0)) throw new Error('no ops registered');`;
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8' });
  if (r.status === 0) return null;
  const lines = `${r.stderr}`.split('\n').map((l) => l.trim());
  return (
    lines.find((l) => /^(Error|error)|not found|undefined symbol|version/.test(l)) ??
    lines.find(Boolean) ??
    `exit ${r.status ?? r.signal}`
  );
}

function candidates(tried) {
  const list = [];
  const local = join(root, 'build', 'Release', 'medic_cpu.node');
  if (existsSync(local)) list.push({ file: local, what: 'local build' });
  else tried.push(`${relative(root, local)}: not built`);
  try {
    const file = require('node-gyp-build').resolve(root);
    if (file !== local) list.push({ file, what: 'prebuilt' });
  } catch (err) {
    tried.push(`prebuilds/: ${err.message.split('\n')[0]}`);
  }
  return list;
}

function onPath(names) {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  return names.find((n) => dirs.some((d) => existsSync(join(d, n))));
}

function missingToolchain() {
  const missing = [];
  const cmake = spawnSync('cmake', ['--version'], { encoding: 'utf8' });
  const version = /cmake version (\d+)\.(\d+)/.exec(cmake.stdout ?? '');
  if (cmake.error || !version) missing.push('cmake >= 3.18 (not found on PATH)');
  else if (Number(version[1]) * 100 + Number(version[2]) < 318)
    missing.push(`cmake >= 3.18 (found ${version[1]}.${version[2]})`);
  if (
    !(process.env.CXX && onPath([process.env.CXX])) &&
    !(process.env.CXX && existsSync(process.env.CXX)) &&
    !onPath(['c++', 'g++', 'clang++'])
  ) {
    missing.push('a C++17 compiler (c++, g++ or clang++ on PATH, or CXX)');
  }
  if (!onPath(['make', 'ninja'])) missing.push('make or ninja');
  return missing;
}

const tried = [];
if (forced()) {
  say('building from source (npm_config_build_from_source is set)');
} else {
  for (const c of candidates(tried)) {
    const err = loadError(c.file);
    if (!err) {
      say(`using the ${c.what} CPU engine ${relative(root, c.file)} (it loads here; nothing to compile)`);
      process.exit(0);
    }
    tried.push(`${relative(root, c.file)} (${c.what}): ${err}`);
  }
  say(
    `no engine binary loads here (${process.platform}-${process.arch}, Node ${process.version}); building from source.`,
  );
  for (const t of tried) console.log(`  tried ${t}`);
}

const missing = missingToolchain();
if (missing.length > 0) {
  console.error(
    [
      `medic-native: cannot build the native engine from source: missing ${missing.join('; ')}.`,
      ...tried.map((t) => `  tried ${t}`),
      '  Install them (Debian/Ubuntu: apt-get install cmake g++ make), then run `npm rebuild medic-native`.',
    ].join('\n'),
  );
  process.exit(1);
}
const r = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs')], { stdio: 'inherit', cwd: root });
if (r.status !== 0) process.exit(r.status ?? 1);
const built = join(root, 'build', 'Release', 'medic_cpu.node');
const err = existsSync(built) ? loadError(built) : 'not produced by the build';
if (err) {
  console.error(`medic-native: the source build finished but ${relative(root, built)} does not load: ${err}`);
  process.exit(1);
}
say(`built ${relative(root, built)} from source`);
