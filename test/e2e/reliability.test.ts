// Reliability and first-run behaviour of the CLI (issue 10), end to end on a tiny configuration:
// run folders are never overwritten or misplaced, failing invocations write nothing, interrupted saves
// are cleaned up, a diverging run keeps only a healthy checkpoint, and the messages a new user meets.
import { spawn } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { SafetensorsFile } from '../../lib/io/safetensors.js';
import { jsonLines, runCli, type CliResult } from '../helpers/cli.js';
import { writeIdx } from '../helpers/data.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'medic-reliab-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// micro student on 16x16 synthetic images in 2 classes: 16 patches; 2 steps of 8 images per epoch.
const tiny = [
  '--data',
  'synthetic:64:2',
  '--img-size',
  '16',
  '--patch-size',
  '4',
  '--model',
  'micro',
  '--teacher-dim',
  '32',
  '--teacher-depth',
  '1',
  '--teacher-heads',
  '2',
  '--decoder-dim',
  '16',
  '--decoder-depth',
  '1',
  '--decoder-heads',
  '2',
  '--batch-size',
  '8',
  '--epochs',
  '2',
  '--steps-per-epoch',
  '2',
  '--warmup-epochs',
  '1',
  '--workers',
  '0',
  '--threads',
  '1',
  '--knn-limit',
  '40',
  '--seed',
  '1',
];

/** The CLI from another working directory (runCli always runs in the repository root). */
function runCliIn(cwd: string, args: string[]): Promise<CliResult> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      join(root, 'node_modules', 'tsx', 'dist', 'loader.mjs'),
      join(root, 'test', 'helpers', 'cli-entry.ts'),
      ...args,
    ],
    {
      cwd,
      env: { ...process.env, CI: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
}

const latest = (run: string) =>
  JSON.parse(readFileSync(join(run, 'checkpoints', 'latest.json'), 'utf8')) as { file: string; step: number };
const files = (d: string) => readdirSync(d).sort();
const steps = (stdout: string) => jsonLines(stdout).filter((e) => e.event === 'step');
const warnings = (stdout: string) =>
  jsonLines(stdout)
    .filter((e) => e.event === 'warning')
    .map((e) => String(e.message));

/** A process id that is not running (a child that has exited). */
async function deadPid(): Promise<number> {
  const c = spawn(process.execPath, ['-e', '0']);
  await new Promise((r) => c.on('close', r));
  return c.pid!;
}

describe("run folders: nothing of a user's work is deleted or misplaced", () => {
  it('refuses a new run in a folder that holds one, unless --resume or --overwrite (item 1)', async () => {
    const out = join(dir, 'r1');
    const a = await runCli(['pretrain', ...tiny, '--steps-per-epoch', '3', '--out', out, '--json']);
    expect(a.code).toBe(0);
    expect(latest(out).step).toBe(6);
    const before = files(join(out, 'checkpoints'));

    // the sequence: a shorter run into the same folder
    const b = await runCli(['pretrain', ...tiny, '--out', out, '--json']);
    expect(b.code).toBe(1);
    expect(b.stderr).toContain(out);
    expect(b.stderr).toMatch(/--resume/);
    expect(b.stderr).toMatch(/--overwrite/);
    expect(files(join(out, 'checkpoints'))).toEqual(before);
    expect(latest(out).step).toBe(6);

    // --overwrite replaces the run's files and nothing else
    writeFileSync(join(out, 'notes.txt'), 'mine');
    writeFileSync(join(out, 'checkpoints', 'my-best.safetensors'), 'mine too');
    const c = await runCli(['pretrain', ...tiny, '--out', out, '--overwrite', '--json']);
    expect(c.stderr).toBe('');
    expect(c.code).toBe(0);
    expect(latest(out).step).toBe(4);
    expect(existsSync(join(out, 'checkpoints', latest(out).file))).toBe(true);
    expect(files(join(out, 'checkpoints'))).toEqual([
      'latest.json',
      'my-best.safetensors',
      'step-00000002.safetensors',
      'step-00000004.safetensors',
    ]);
    expect(readFileSync(join(out, 'notes.txt'), 'utf8')).toBe('mine');
    expect(
      readFileSync(join(out, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).step),
    ).toEqual([1, 2, 3, 4]);
    const d = await runCli(['pretrain', '--resume', out, '--json']);
    expect(d.code).toBe(0);
  });

  it('writes a resumed run into the folder given to --resume, not the one saved in the checkpoint (item 2)', async () => {
    const a = join(dir, 'r2a');
    const b = join(dir, 'r2b');
    expect((await runCli(['pretrain', ...tiny, '--out', a, '--stop-after', '2', '--json'])).code).toBe(0);
    cpSync(a, b, { recursive: true });
    const before = files(join(a, 'checkpoints'));
    const metricsBefore = readFileSync(join(a, 'metrics.jsonl'), 'utf8');
    const r = await runCli(['pretrain', '--resume', b, '--json']);
    expect(r.code).toBe(0);
    expect(jsonLines(r.stdout).find((e) => e.event === 'summary')!.outDir).toBe(b);
    expect(latest(b).step).toBe(4);
    expect(files(join(a, 'checkpoints'))).toEqual(before);
    expect(readFileSync(join(a, 'metrics.jsonl'), 'utf8')).toBe(metricsBefore);
    expect(existsSync(join(a, 'student-timm.safetensors'))).toBe(false);
    expect(JSON.parse(readFileSync(join(b, 'config.json'), 'utf8')).out).toBe(b);
  });

  it('a failing invocation writes nothing to the run folder (item 3)', async () => {
    const out = join(dir, 'r3');
    expect((await runCli(['pretrain', ...tiny, '--out', out, '--json'])).code).toBe(0);
    const config = readFileSync(join(out, 'config.json'), 'utf8');
    const mtimes = () => readdirSync(out).map((f) => [f, statSync(join(out, f)).mtimeMs]);
    const before = mtimes();
    for (const args of [
      ['--resume', out, '--batch-size', '1000'], // larger than the data: known only once the data is open
      ['--resume', out, '--data', join(dir, 'no-such-folder')],
      ['--resume', out, '--model', 'mini'], // the checkpoint does not fit
    ]) {
      const r = await runCli(['pretrain', ...args, '--json']);
      expect(r.code, args.join(' ')).toBe(1);
      expect(readFileSync(join(out, 'config.json'), 'utf8'), args.join(' ')).toBe(config);
    }
    expect(mtimes()).toEqual(before);
  });

  it('the next start in a run folder removes temporary files left by a kill mid-save (item 4)', async () => {
    const out = join(dir, 'r4');
    expect((await runCli(['pretrain', ...tiny, '--out', out, '--stop-after', '2', '--json'])).code).toBe(0);
    const pid = await deadPid();
    const left = [`checkpoints/step-00000003.safetensors.tmp-${pid}`, `checkpoints/latest.json.tmp-${pid}`];
    for (const f of left) writeFileSync(join(out, f), Buffer.alloc(1000));
    writeFileSync(join(out, 'checkpoints', 'notes.tmp-1'), 'not ours'); // not a name this program writes
    const r = await runCli(['pretrain', '--resume', out, '--json']);
    expect(r.code).toBe(0);
    for (const f of left) expect(existsSync(join(out, f)), f).toBe(false);
    expect(existsSync(join(out, 'checkpoints', 'notes.tmp-1'))).toBe(true);
    expect(
      jsonLines(r.stdout).some((e) => e.event === 'info' && /removed 2 temporary file/.test(String(e.message))),
    ).toBe(true);
  });
});

describe('divergence', () => {
  it('stops at a loss spike before the diverged state is checkpointed, and resuming with a sane lr trains (item 5)', async () => {
    const out = join(dir, 'r5');
    // one step per epoch (a checkpoint after each); the second step's lr (about 30) wrecks the weights,
    // which the loss shows at the third step as a finite spike (~1e6), not as NaN
    const args = [
      ...tiny,
      '--steps-per-epoch',
      '1',
      '--epochs',
      '6',
      '--warmup-epochs',
      '2',
      '--lr',
      '1e3',
      '--out',
      out,
      '--json',
    ];
    const r = await runCli(['pretrain', ...args]);
    expect(r.code).toBe(3);
    const msg = warnings(r.stdout).find((m) => /diverged/.test(m));
    expect(msg).toMatch(/median/);
    expect(msg).toMatch(/step-00000001\.safetensors/);
    expect(msg).toMatch(/lower --lr/);
    expect(latest(out).step).toBe(1);
    expect(files(join(out, 'checkpoints'))).toEqual(['latest.json', 'step-00000001.safetensors']);
    const again = await runCli(['pretrain', '--resume', out, '--lr', '1e-3', '--json']);
    expect(again.code).toBe(0);
    const s = steps(again.stdout);
    expect(s.map((e) => e.step)).toEqual([2, 3, 4, 5, 6]);
    for (const e of s) expect(e.loss as number).toBeLessThan(20);
  });
});

describe('teacher, evaluation and export', () => {
  it('--teacher-heads is honoured with a --teacher checkpoint (item 8)', async () => {
    const r = await runCli([
      'pretrain',
      ...tiny,
      '--teacher',
      'test/fixtures/clip_ckpt_hf.safetensors',
      '--teacher-heads',
      '2',
      '--epochs',
      '1',
      '--out',
      join(dir, 'r8'),
      '--json',
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect((jsonLines(r.stdout)[0].config as Record<string, unknown>).teacherHeads).toBe(2);
  });

  it('eval knn works from another working directory: paths are saved absolute, the teacher is not needed (item 9)', async () => {
    const out = join(dir, 'r9');
    const r = await runCli([
      'pretrain',
      ...tiny,
      '--teacher',
      'test/fixtures/clip_ckpt_openai.safetensors',
      '--epochs',
      '1',
      '--out',
      out,
      '--json',
    ]);
    expect(r.code).toBe(0);
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).teacher).toBe(
      join(root, 'test/fixtures/clip_ckpt_openai.safetensors'),
    );
    const e = await runCliIn(dir, ['eval', 'knn', out, '--json']);
    expect(e.stderr).toBe('');
    expect(e.code).toBe(0);
    expect(jsonLines(e.stdout)[0].knn).toEqual(
      jsonLines(r.stdout).find((x) => x.event === 'eval' && x.which === 'pretrained')!.knn,
    );
  });

  it("an export trained with --layer-scale 0 has exactly the tensors of timm's model with init_values 0 (item 10)", async () => {
    const out = join(dir, 'r10');
    const r = await runCli(['pretrain', ...tiny, '--layer-scale', '0', '--epochs', '1', '--out', out, '--json']);
    expect(r.code).toBe(0);
    const f = new SafetensorsFile(join(out, 'student-timm.safetensors'));
    try {
      const { kwargs, pretrained_cfg } = JSON.parse(f.metadata.timm) as {
        kwargs: Record<string, unknown>;
        pretrained_cfg: unknown;
      };
      expect(f.names().sort()).toEqual(timmVitKeys(2, !!kwargs.init_values).sort());
      // the normalisation it trained with (synthetic images: ImageNet's), in timm's pretrained_cfg
      expect(pretrained_cfg).toEqual({ mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] });
    } finally {
      f.close();
    }
  });

  it('a one-class dataset says kNN needs two classes and reports it as not applicable (item 11)', async () => {
    const out = join(dir, 'r11');
    // IDX digits that are all labelled 0
    const data = join(dir, 'one-class');
    mkdirSync(data, { recursive: true });
    const px = (n: number) => Uint8Array.from({ length: n * 256 }, (_, i) => (i * 37) % 251);
    writeIdx(join(data, 'train-images-idx3-ubyte'), [64, 16, 16], px(64));
    writeIdx(join(data, 'train-labels-idx1-ubyte'), [64], new Uint8Array(64));
    writeIdx(join(data, 't10k-images-idx3-ubyte'), [10, 16, 16], px(10));
    writeIdx(join(data, 't10k-labels-idx1-ubyte'), [10], new Uint8Array(10));
    const r = await runCli(['pretrain', ...tiny, '--data', `idx:${data}`, '--epochs', '1', '--out', out, '--json']);
    expect(r.code).toBe(0);
    expect(warnings(r.stdout).some((m) => /kNN needs at least two classes/.test(m))).toBe(true);
    expect(jsonLines(r.stdout).filter((e) => e.event === 'eval')).toEqual([]);
    expect(JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')).knn).toBeNull();
    const e = await runCli(['eval', 'knn', out]);
    expect(e.code).toBe(1);
    expect(e.stderr).toMatch(/kNN needs at least two classes/);
    expect(e.stderr).toContain(`idx:${data}`);
  });
});

/** The state_dict keys of timm's VisionTransformer(class_token, no head, qkv_bias) of `depth` blocks. */
function timmVitKeys(depth: number, layerScale: boolean): string[] {
  const keys = [
    'cls_token',
    'pos_embed',
    'patch_embed.proj.weight',
    'patch_embed.proj.bias',
    'norm.weight',
    'norm.bias',
  ];
  for (let i = 0; i < depth; i++) {
    const b = `blocks.${i}`;
    for (const m of ['norm1', 'attn.qkv', 'attn.proj', 'norm2', 'mlp.fc1', 'mlp.fc2'])
      keys.push(`${b}.${m}.weight`, `${b}.${m}.bias`);
    if (layerScale) keys.push(`${b}.ls1.gamma`, `${b}.ls2.gamma`);
  }
  return keys;
}

describe('messages and first-run polish', () => {
  it('a bad flag value or unknown flag prints the error and one line pointing at --help (item 12)', async () => {
    for (const args of [
      ['pretrain', '--model', 'huge'],
      ['pretrain', '--no-such-flag'],
    ]) {
      const r = await runCli(args);
      expect(r.code).not.toBe(0);
      const lines = r.stderr.trim().split('\n');
      expect(lines.length, r.stderr).toBeLessThanOrEqual(2);
      expect(r.stderr).toMatch(/huge|--no-such-flag/);
      expect(lines[lines.length - 1]).toMatch(/--help/);
    }
  });

  it('a broken teacher file or path names the file, the key and what was expected (item 12)', async () => {
    const nullEntry = join(dir, 'null-entry.safetensors');
    const header = Buffer.from(JSON.stringify({ 'visual.conv1.weight': null }));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    writeFileSync(nullEntry, Buffer.concat([len, header]));
    const a = await runCli(['pretrain', ...tiny, '--teacher', nullEntry, '--out', join(dir, 'r12a')]);
    expect(a.code).toBe(1);
    expect(a.stderr).toMatch(/null-entry\.safetensors/);
    expect(a.stderr).toMatch(/visual\.conv1\.weight/);
    expect(a.stderr).not.toMatch(/Cannot read properties/);
    const folder = join(dir, 'a-folder');
    mkdirSync(folder, { recursive: true });
    const b = await runCli(['pretrain', ...tiny, '--teacher', folder, '--out', join(dir, 'r12b')]);
    expect(b.code).toBe(1);
    expect(b.stderr).toContain(folder);
    expect(b.stderr).toMatch(/folder/);
    expect(b.stderr).not.toMatch(/EISDIR/);
    // an engine that cannot load (no CUDA build here) is reported once, not as "medic-native: medic-native:"
    const c = await runCli(['pretrain', ...tiny, '--device', 'cuda', '--out', join(dir, 'r12c')]);
    expect(c.code).toBe(1);
    expect(c.stderr).not.toMatch(/medic-native: medic-native:/);
  });

  it('prints only the settings that differ from the defaults, and shows the random-init kNN as it runs (item 14)', async () => {
    const out = join(dir, 'r14');
    const r = await runCli(['pretrain', ...tiny, '--epochs', '1', '--out', out]);
    expect(r.code).toBe(0);
    const head = r.stdout.split('\n').slice(
      0,
      r.stdout.split('\n').findIndex((l) => l.startsWith('data:')),
    );
    expect(head.length).toBeLessThanOrEqual(8); // was 55 lines, one per setting
    const text = head.join('\n');
    expect(text).toContain('--model micro');
    expect(text).toContain('--batch-size 8');
    expect(text).not.toMatch(/--w-cls|--tau|--mask-ratio/); // at their defaults
    expect(text).toContain(join(out, 'config.json'));
    const all = r.stdout + r.stderr;
    const progress = all.search(/kNN random-init: embedding \d+ images/);
    expect(progress).toBeGreaterThanOrEqual(0);
    // the end says how the run ended, after how long, and the precision it ran in
    expect(r.stdout).toMatch(
      /^done after (\d+ min )?[\d.]+ s: \d+ steps of 8 images in (\d+ min )?[\d.]+ s \([\d,]+ img\/s\), precision fp32$/m,
    );
  });

  it('--help says synthetic[:n[:classes]] and every default as "(default: x)"; the data line reads as counts and pixels (item 16)', async () => {
    // help lines wrap at the terminal's width: compare with whitespace folded
    const flat = (t: string) => t.replace(/\s+/g, ' ');
    const h = flat((await runCli(['pretrain', '--help'])).stdout);
    expect(h).toContain('synthetic[:n[:classes]]');
    expect(h).toMatch(
      /--model <name> student size \(choices: "micro", "mini", "tiny", "small", "base", default: mini\)/,
    );
    expect(h).toContain(
      '--batch-size <n> images per step in each process (global batch = processes x this) (default: 128)',
    );
    expect(h).not.toMatch(/\(default [^:]/);
    const e = flat((await runCli(['eval', 'knn', '--help'])).stdout);
    expect(e).toContain("--knn-k <list> k values, comma separated (default: the run's --knn-k; 10,20 unless set)");
    expect(e).toContain(
      "--knn-limit <n> embed at most N train images (0 = all) (default: the run's --knn-limit; 0 unless set)",
    );
    const r = await runCli(['pretrain', ...tiny, '--epochs', '1', '--out', join(dir, 'r16'), '--json']);
    const data = jsonLines(r.stdout)
      .filter((x) => x.event === 'info' && String(x.message).startsWith('data:'))
      .map((x) => String(x.message));
    expect(data.join('\n')).not.toMatch(/\d+x\d+px/);
    expect(data.join('\n')).toMatch(/64 images of 64x64 px/);
  });
});
