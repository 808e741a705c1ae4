#!/usr/bin/env node
// Rewrites a CUDA source (.cu / .cuh) into C++ for the CPU emulator (cuda_emu.h):
//   k<<<grid, block[, smem[, stream]]>>>(args)
//     -> ::medic_emu::launch("k", fn, grid, block, smem, stream, [=](auto&&... a_) { k(a_...); }, args)
//   extern __shared__ [__align__(n)] T name[];
//     -> T* name = reinterpret_cast<T*>(::medic_emu::dynamic_smem());
//   __shared__ T name[...];  ->  the same, plus ::medic_emu::shared_declared(&name, sizeof(name));
//   __global__ void __launch_bounds__(N) k(...) {  ->  the same, plus ::medic_emu::check_launch_bounds(N);
// Everything else is left as it is (cuda_emu.h maps qualifiers, types and intrinsics). Line breaks are
// kept and a #line directive names the original file, so compiler errors point at the real source.
//
//   node translate.mjs <in.cu> <out.cpp>
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

const [input, output] = process.argv.slice(2);
if (!input || !output) {
  console.error('usage: node translate.mjs <in.cu> <out.cpp>');
  process.exit(2);
}

const src = readFileSync(input, 'utf8');

function fail(at, msg) {
  const line = src.slice(0, at).split('\n').length;
  console.error(`${input}:${line}: translate: ${msg}`);
  process.exit(1);
}

// Index of the bracket closing the one at `open` (same kind), skipping nested (), [], {}.
function closing(text, open) {
  const pairs = { '(': ')', '[': ']', '{': '}', '<': '>' };
  const stack = [pairs[text[open]]];
  for (let i = open + 1; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"' || ch === "'") {
      for (i++; i < text.length && text[i] !== ch; i++) if (text[i] === '\\') i++;
      continue;
    }
    if (ch in pairs && (ch !== '<' || stack[stack.length - 1] === '>')) stack.push(pairs[ch]);
    else if (ch === stack[stack.length - 1]) {
      stack.pop();
      if (stack.length === 0) return i;
    }
  }
  return -1;
}

// Splits at top-level commas (outside (), [], {}).
function splitTop(text) {
  const parts = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if ('([{'.includes(ch)) depth++;
    else if (')]}'.includes(ch)) depth--;
    else if (ch === ',' && depth === 0) {
      parts.push(text.slice(start, i).trim());
      start = i + 1;
    }
  }
  if (text.trim()) parts.push(text.slice(start).trim());
  return parts;
}

// The kernel expression ending just before `end`: an identifier with optional :: and <template args>,
// possibly followed by white space (clang-format breaks a long launch before its `<<<`).
function kernelStart(text, end) {
  let i = end;
  while (i > 0 && /\s/.test(text[i - 1])) i--;
  for (;;) {
    if (text[i - 1] === '>') {
      let depth = 0;
      let j = i - 1;
      for (; j >= 0; j--) {
        if (text[j] === '>') depth++;
        else if (text[j] === '<' && --depth === 0) break;
      }
      if (j < 0) return -1;
      i = j;
    }
    let j = i;
    while (j > 0 && /[\w:]/.test(text[j - 1])) j--;
    if (j === i) return -1;
    return j;
  }
}

const newlines = (s) => '\n'.repeat((s.match(/\n/g) || []).length);

let out = '';
let pos = 0;
const launch = /<<</g;
let m;
while ((m = launch.exec(src))) {
  const at = m.index;
  // Skip comments: a `<<<` on a line whose code part ended before it.
  const lineStart = src.lastIndexOf('\n', at) + 1;
  const before = src.slice(lineStart, at);
  if (before.includes('//')) continue;
  const kStart = kernelStart(src, at);
  if (kStart < 0) fail(at, 'cannot find the kernel name before <<<');
  const kernel = src.slice(kStart, at).trim();
  const cfgEnd = src.indexOf('>>>', at);
  if (cfgEnd < 0) fail(at, 'no >>> after <<<');
  const cfg = splitTop(src.slice(at + 3, cfgEnd));
  if (cfg.length < 2 || cfg.length > 4) fail(at, `a launch takes 2 to 4 configuration values, found ${cfg.length}`);
  const open = cfgEnd + 3;
  if (src[open] !== '(') fail(at, 'expected ( after >>>');
  const close = closing(src, open);
  if (close < 0) fail(at, 'unbalanced launch arguments');
  const args = src.slice(open + 1, close);
  const [grid, block, smem = '0', stream = 'nullptr'] = cfg;
  const fn = smem === '0' ? 'nullptr' : `::medic_emu::fn_id(${kernel})`;
  const call =
    `::medic_emu::launch(${JSON.stringify(kernel)}, ${fn}, ${grid}, ${block}, ${smem}, ${stream}, ` +
    `[=](auto&&... a_) { ${kernel}(a_...); }${args.trim() ? ', ' + args.replace(/\n\s*/g, ' ') : ''})`;
  // The statement's `;` goes with the call, then the line breaks the launch spanned.
  const end = src[close + 1] === ';' ? close + 2 : close + 1;
  out += src.slice(pos, kStart) + call + src.slice(close + 1, end) + newlines(src.slice(kStart, end));
  pos = end;
  launch.lastIndex = end;
}
out += src.slice(pos);

// __launch_bounds__(N[, M]) is an attribute to nvcc; a launch with more than N threads per block fails
// on the GPU. The attribute stays (cuda_emu.h makes it empty) and the kernel body starts with a check
// of N, evaluated where the kernel's template parameters are in scope.
{
  const bounds = /__launch_bounds__\(/g;
  let b;
  let text = '';
  let from = 0;
  while ((b = bounds.exec(out))) {
    const open = b.index + '__launch_bounds__'.length;
    const close = closing(out, open);
    const first = splitTop(out.slice(open + 1, close))[0];
    const params = out.indexOf('(', close + 1);  // the kernel's parameter list
    const body = out.indexOf('{', closing(out, params));
    if (params < 0 || body < 0) fail(b.index, 'cannot find the kernel body after __launch_bounds__');
    text += out.slice(from, body + 1) + ` ::medic_emu::check_launch_bounds(${first});`;
    from = body + 1;
    bounds.lastIndex = body + 1;
  }
  out = text + out.slice(from);
}

// Static shared variables stay `static` (cuda_emu.h), one instance for the blocks that run one after
// another; each declaration also tells the emulator, which fills the variable with 0xFF bytes (NaN as
// floats) the first time a thread of a new block reaches it, so a read of shared memory that this
// block never wrote shows as NaN, as stale contents would on a GPU, instead of the last block's data.
out = out.replace(/(^[ \t]*__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?[\w:<>]+\s+(\w+)(?:\[[^\]\n]*\])*\s*;)/gm,
  (_, decl, name) => `${decl} ::medic_emu::shared_declared(&${name}, sizeof(${name}));`);

out = out.replace(/extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?([\w:][\w:\s]*?)\s+(\w+)\s*\[\s*\]\s*;/g,
  (_, type, name) => `${type}* ${name} = reinterpret_cast<${type}*>(::medic_emu::dynamic_smem());`);

mkdirSync(dirname(resolve(output)), { recursive: true });
writeFileSync(output, `#line 1 ${JSON.stringify(resolve(input))}\n${out}`);
