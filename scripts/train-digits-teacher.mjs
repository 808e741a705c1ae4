#!/usr/bin/env node
// Trains the bundled digits teacher (assets/teachers/digits-mini.safetensors) with this program's own
// commands, so anyone can reproduce the file from the repository:
//   1. a one-step pretraining run fixes the architecture (the mini ViT at 28 px, 7 px patches) and the
//      seed; its weights are not used;
//   2. `eval finetune --from-scratch` trains that architecture from its seeded random init with the
//      labels of the bundled digits' train split (9,001 images; the 999 val digits stay unseen);
//   3. the fine-tuned classifier's timm export (blocks, final norm and class head) is copied to assets/.
// It stands in for CLIP's knowledge in the default run, where no CLIP weights can be downloaded: see
// docs/TEACHER.md. About 5 minutes on a quiet 2-core machine; the result is deterministic for a given
// thread count (re-run on 2026-12-04: the same file, byte for byte, sha256 in assets/teachers/README.md).
//
//   npm run build:ts && node scripts/train-digits-teacher.mjs [--out assets/teachers/digits-mini.safetensors]
//
// The same recipe makes a knowledgeable teacher for another 28 px IDX dataset (the sweeps of bench/README.md
// use one for Fashion-MNIST); --data and --epochs are passed to the fine-tune, --out is then required:
//   node scripts/train-digits-teacher.mjs --data idx:<dir> --epochs 20 --out <file>
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
function flag(name) {
  const i = process.argv.indexOf(name);
  if (i < 0) return undefined;
  const v = process.argv[i + 1];
  if (v === undefined || v.startsWith('--')) throw new Error(`${name} needs a value`);
  return v;
}
const data = flag('--data');
const epochs = flag('--epochs');
const out = flag('--out');
// Another dataset's teacher must not overwrite the bundled digits teacher by default.
if (data !== undefined && out === undefined)
  throw new Error('--data needs --out <file> (the bundled teacher stays as it is)');
const target = resolve(out ?? join(root, 'assets/teachers/digits-mini.safetensors'));
// Later flags win in the fine-tune's parser, so these override the recipe's.
const overrides = [...(data ? ['--data', data] : []), ...(epochs ? ['--epochs', epochs, '--warmup-epochs', '1'] : [])];

// The recipe: from scratch there is nothing to preserve, so no layer decay, and a higher lr than the
// fine-tune default; mixup and CutMix off (on 9k digits they slow the supervised fit more than they regularise).
export const RECIPE = [
  '--epochs',
  '30',
  '--lr',
  '2e-3',
  '--layer-decay',
  '1',
  '--mixup',
  '0',
  '--cutmix',
  '0',
  '--warmup-epochs',
  '2',
  '--drop-path',
  '0.1',
  '--smoothing',
  '0.1',
  '--pool',
  'cls',
  '--seed',
  '0',
];

function cli(args) {
  const r = spawnSync(process.execPath, [join(root, 'bin/medic-native.js'), ...args], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`medic-native ${args.join(' ')} exited with ${r.status}`);
}

const work = mkdtempSync(join(tmpdir(), 'medic-digits-teacher-'));
try {
  const carrier = join(work, 'architecture');
  cli([
    'pretrain',
    '--data',
    'mnist',
    '--model',
    'mini',
    '--teacher',
    'random',
    '--seed',
    '0',
    '--threads',
    '2',
    '--stop-after',
    '1',
    '--out',
    carrier,
  ]);
  const ft = join(work, 'finetune');
  cli(['eval', 'finetune', carrier, '--from-scratch', ...RECIPE, ...overrides, '--threads', '2', '--out', ft]);
  const summary = JSON.parse(readFileSync(join(ft, 'summary.json'), 'utf8'));
  const exported = join(ft, 'classifier-timm.safetensors');
  if (!existsSync(exported)) throw new Error(`no timm export at ${exported}`);
  mkdirSync(dirname(target), { recursive: true });
  copyFileSync(exported, target);
  const sha = createHash('sha256').update(readFileSync(target)).digest('hex');
  console.log(`teacher: ${target}`);
  console.log(`val top-1 of its head: ${(100 * summary.final.head.top1).toFixed(2)} %`);
  console.log(`sha256 ${sha}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
