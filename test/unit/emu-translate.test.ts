// native/tests/emu/translate.mjs: the CUDA -> C++ rewrite the CPU emulator builds on. Each rewrite
// on a small source with the awkward cases of our kernels: template kernels, commas and parentheses
// inside the launch configuration, multi-line arguments, a launch inside a lambda, `<<<` in a
// comment, launch bounds with template-dependent expressions, and line numbers kept.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'medic-translate-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function translate(src: string): { code: number | null; out: string; err: string } {
  const input = join(dir, 'in.cu');
  const output = join(dir, 'out.cpp');
  writeFileSync(input, src);
  const r = spawnSync(process.execPath, [join(root, 'native/tests/emu/translate.mjs'), input, output], {
    encoding: 'utf8',
  });
  return { code: r.status, out: r.status === 0 ? readFileSync(output, 'utf8') : '', err: r.stderr };
}

describe('emulator translate.mjs', () => {
  it('rewrites launches, evaluating the arguments at the launch', () => {
    const { code, out } = translate(
      [
        'void f(const OpCall& c, int n) {',
        '  // k<<<1, 2>>>(x) in a comment stays',
        '  add_kernel<<<grid_for(c, n), kBlock, 0, stream_of(c)>>>(a, b,',
        '      y, n);',
        '  colsum<NS, F><<<dim3(g, 2), dim3(32, 8), 0, st>>>(f, R);',
        '  kernel<<<grid, kThreads, smem, st>>>(args);',
        '  auto l = [](int* d) { fill<<<1, 32>>>(d); };',
        '  empty_args<<<1, 1>>>();',
        '}',
      ].join('\n'),
    );
    expect(code).toBe(0);
    const lines = out.split('\n');
    expect(lines[0]).toMatch(/^#line 1 ".*in\.cu"$/);
    expect(lines[2]).toBe('  // k<<<1, 2>>>(x) in a comment stays');
    expect(lines[3]).toBe(
      '  ::medic_emu::launch("add_kernel", nullptr, grid_for(c, n), kBlock, 0, stream_of(c), [=](auto&&... a_) { add_kernel(a_...); }, a, b, y, n);',
    );
    expect(lines[4]).toBe(''); // the argument's second line: line numbers stay those of the source
    expect(lines[5]).toContain(
      '::medic_emu::launch("colsum<NS, F>", nullptr, dim3(g, 2), dim3(32, 8), 0, st, [=](auto&&... a_) { colsum<NS, F>(a_...); }, f, R);',
    );
    // a non-zero dynamic shared memory size: the kernel is named for the cudaFuncSetAttribute check
    expect(lines[6]).toContain('::medic_emu::launch("kernel", ::medic_emu::fn_id(kernel), grid, kThreads, smem, st,');
    expect(lines[7]).toContain(
      '[](int* d) { ::medic_emu::launch("fill", nullptr, 1, 32, 0, nullptr, [=](auto&&... a_) { fill(a_...); }, d); }',
    );
    expect(lines[8]).toContain(
      '::medic_emu::launch("empty_args", nullptr, 1, 1, 0, nullptr, [=](auto&&... a_) { empty_args(a_...); })',
    );
    expect(out).not.toMatch(/<<<.*>>>\(a, b/);
  });

  it('reads a launch that clang-format broke before its <<<', () => {
    const { code, out } = translate(
      [
        'void f() {',
        '  if (v)',
        '    norm_kernel<true>',
        '        <<<grid, kBlock, 0, st>>>(x, y);',
        '  done();',
        '}',
      ].join('\n'),
    );
    expect(code).toBe(0);
    const lines = out.split('\n');
    expect(lines[3]).toBe(
      '    ::medic_emu::launch("norm_kernel<true>", nullptr, grid, kBlock, 0, st, [=](auto&&... a_) { norm_kernel<true>(a_...); }, x, y);',
    );
    expect(lines[4]).toBe(''); // the launch's second line: line numbers stay those of the source
    expect(lines[5]).toBe('  done();');
  });

  it('rewrites shared memory and launch bounds', () => {
    const { code, out } = translate(
      [
        'template <int HDP>',
        '__global__ void __launch_bounds__(kThreads, kMinCtas<HDP>) attn(const Args a) {',
        '  extern __shared__ __align__(16) unsigned char smem[];',
        '  __shared__ __align__(16) __nv_bfloat16 sA[2][kStageElems];',
        '  __shared__ AdamStep sk;',
        '}',
      ].join('\n'),
    );
    expect(code).toBe(0);
    const lines = out.split('\n');
    expect(lines[2]).toBe(
      '__global__ void __launch_bounds__(kThreads, kMinCtas<HDP>) attn(const Args a) { ::medic_emu::check_launch_bounds(kThreads);',
    );
    expect(lines[3]).toBe('  unsigned char* smem = reinterpret_cast<unsigned char*>(::medic_emu::dynamic_smem());');
    expect(lines[4]).toBe(
      '  __shared__ __align__(16) __nv_bfloat16 sA[2][kStageElems]; ::medic_emu::shared_declared(&sA, sizeof(sA));',
    );
    expect(lines[5]).toBe('  __shared__ AdamStep sk; ::medic_emu::shared_declared(&sk, sizeof(sk));');
  });

  it('names the file and line of a launch it cannot read', () => {
    const r = translate('void f() {\n  k<<<1, 2, 3, 4, 5>>>(x);\n}\n');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/in\.cu:2: translate: a launch takes 2 to 4 configuration values, found 5/);
  });
});
