// `medic-native pretrain`: MEDiC pretraining with the effective config printed first, a progress bar
// on a terminal (plain lines otherwise), metrics as JSON lines, checkpoints, kNN at the end.
import { join } from 'node:path';

import { Option, type Command } from 'commander';

import { World, detectLaunch, type Launch } from '../engine/index.js';
import { studentPresets } from '../models/vit.js';
import { applyTeacherCheckpoint } from '../train/build.js';
import {
  absolutePaths,
  defaultConfig,
  flagOf,
  formatConfigChanges,
  readConfigFile,
  resolveConfig,
  teacherFile,
  type ConfigFlags,
  type PretrainConfig,
} from '../train/config.js';
import { checkSavedTeacher, readResume } from '../train/resume.js';
import { pretrain, type PretrainEvents, type PretrainResult } from '../train/run.js';
import { spellDuration } from '../util/duration.js';
import { givenOptions } from './options.js';
import { Progress } from './progress.js';

interface FlagSpec {
  key: keyof PretrainConfig;
  help: string;
  arg?: string;
  choices?: string[];
}

// The flags, in --help order: one per config key (a test checks). Every key can also be set in --config file.json.
export const flags: FlagSpec[] = [
  {
    key: 'data',
    arg: 'spec',
    help: 'training data: an image folder (root/<class>/<image>, optional train/ and val/), idx:<dir>, mnist (bundled digits) or synthetic[:n[:classes]] (n generated images)',
  },
  {
    key: 'teacher',
    arg: 'path',
    help: "the frozen teacher: a ViT checkpoint (safetensors: CLIP in Hugging Face or OpenAI names, or timm's VisionTransformer), 'digits' (the bundled digits ViT, trained with labels), 'random' (a seeded random CLIP-architecture network) or 'auto' (digits for the bundled digits at 28 px with 7 px patches, else random)",
  },
  { key: 'model', arg: 'name', help: 'student size', choices: Object.keys(studentPresets) },
  { key: 'imgSize', arg: 'px', help: 'image side (0 = auto: 28 for digits, 224 otherwise)' },
  { key: 'patchSize', arg: 'px', help: 'patch side (0 = auto: 7 for digits, 16 otherwise)' },
  {
    key: 'encoding',
    arg: 'kind',
    help: 'sparse: visible tokens only (MEDiC); dense: mask token (MaskDistill)',
    choices: ['sparse', 'dense'],
  },
  {
    key: 'mask',
    arg: 'kind',
    help: "masking: block (BEiT), random (MAE) or evolved (parts from the teacher's attention; docs/TEACHER.md)",
    choices: ['block', 'random', 'evolved'],
  },
  { key: 'maskRatio', arg: 'r', help: 'fraction of patches masked' },
  {
    key: 'maskCluster',
    arg: 'kind',
    help: "evolved masking's clustering: hc (MEDiC's agglomerative) or em (EPM's soft k-means)",
    choices: ['hc', 'em'],
  },
  {
    key: 'maskLambda',
    arg: 'l',
    help: "hc: weight of the parts' grid distance against their attention similarity (0 = similarity only)",
  },
  {
    key: 'evolveEpochs',
    arg: 'n',
    help: 'evolved masking: epochs over which parts fall from 40 to 10 and the noise turns to whole parts (0 = all epochs)',
  },
  { key: 'evolveGamma', arg: 'g', help: 'evolved masking: part-noise weight ((epoch + 1) / E)^g' },
  { key: 'wTok', arg: 'w', help: 'weight of the patch-token distillation loss' },
  { key: 'wCls', arg: 'w', help: 'weight of the CLS alignment loss' },
  { key: 'wPix', arg: 'w', help: 'weight of the pixel reconstruction loss (0 removes the decoder)' },
  {
    key: 'lossBalance',
    arg: 'mode',
    help: 'loss balancing: static weights; ema divides each term by its running mean; uncertainty learns a log-variance per term',
    choices: ['static', 'ema', 'uncertainty'],
  },
  { key: 'balanceMomentum', arg: 'm', help: 'momentum of the ema balancing' },
  { key: 'epochs', arg: 'n', help: 'epochs' },
  { key: 'batchSize', arg: 'n', help: 'images per step in each process (global batch = processes x this)' },
  { key: 'lr', arg: 'lr', help: 'base learning rate per --lr-batch-ref images (peak lr = lr * global batch / ref)' },
  { key: 'lrBatchRef', arg: 'n', help: 'batch size the base lr refers to' },
  { key: 'warmupEpochs', arg: 'n', help: 'linear warmup epochs' },
  { key: 'warmupLr', arg: 'lr', help: 'learning rate at the start of the warmup' },
  { key: 'minLr', arg: 'lr', help: 'learning rate at the end of the per-step cosine' },
  { key: 'weightDecay', arg: 'wd', help: 'weight decay (cosine-decayed to --weight-decay-end)' },
  { key: 'weightDecayEnd', arg: 'wd', help: 'weight decay at the last step' },
  { key: 'clipGrad', arg: 'norm', help: 'clip gradients to this global norm' },
  { key: 'dropPath', arg: 'p', help: 'stochastic depth of the last block (rises linearly from 0)' },
  { key: 'layerScale', arg: 'g', help: 'initial LayerScale gamma of the student blocks' },
  { key: 'tau', arg: 't', help: 'temperature of the CLS alignment loss (1 - cos) / tau' },
  { key: 'teacherDim', arg: 'n', help: 'random teacher width (a checkpoint brings its own)' },
  { key: 'teacherDepth', arg: 'n', help: 'random teacher depth (a checkpoint brings its own)' },
  {
    key: 'teacherHeads',
    arg: 'n',
    help: 'random teacher heads (a checkpoint: config.json beside it, else 64-dim heads)',
  },
  { key: 'teacherMlpRatio', arg: 'r', help: 'random teacher MLP width / width (a checkpoint brings its own)' },
  {
    key: 'teacherLayer',
    arg: 'n',
    help: 'the teacher block whose output is the target, 1-based (0 = the last, before the final norm)',
  },
  {
    key: 'teacherPool',
    arg: 'kind',
    help: "the CLS target: the teacher's CLS token (cls) or the mean of its patch tokens (avg, for classifiers pooled that way); auto reads it from the checkpoint",
    choices: ['auto', 'cls', 'avg'],
  },
  {
    key: 'teacherNormalize',
    arg: 'kind',
    help: "the teacher's input normalisation, the student's images renormalised to it: auto (the checkpoint's metadata or a config beside it; CLIP's for a CLIP file without one; else the student's), student, imagenet, clip or 'm1,m2,m3/s1,s2,s3'",
  },
  { key: 'decoderDim', arg: 'n', help: 'pixel decoder width' },
  { key: 'decoderDepth', arg: 'n', help: 'pixel decoder depth' },
  { key: 'decoderHeads', arg: 'n', help: 'pixel decoder heads' },
  { key: 'cropScale', arg: 's', help: 'RandomResizedCrop smallest area fraction' },
  { key: 'hflip', arg: 'p', help: 'horizontal flip probability (-1 = auto: 0 for digits, 0.5 otherwise)' },
  { key: 'colorJitter', arg: 's', help: 'color jitter strength (0 = off)' },
  { key: 'normalize', arg: 'kind', help: "input normalisation: auto, imagenet, clip, mnist or 'm1,m2,m3/s1,s2,s3'" },
  { key: 'device', arg: 'dev', help: 'auto, cpu, cuda or cuda:N' },
  { key: 'threads', arg: 'n', help: 'CPU threads for the engine (0 = all cores)' },
  {
    key: 'precision',
    arg: 'p',
    help: 'fp32, bf16 or auto (bf16 on CUDA compute capability 8.0+ and where the CPU has bf16 dot products: AVX512-BF16 or AMX)',
  },
  { key: 'workers', arg: 'n', help: 'data loader worker threads (decode + augment; 0 = on the main thread)' },
  { key: 'prefetch', arg: 'n', help: 'batches the loader prepares ahead of the trainer' },
  { key: 'seed', arg: 'n', help: 'seed of init, masks, data order and augmentation' },
  { key: 'out', arg: 'dir', help: 'run folder (config.json, metrics.jsonl, checkpoints/, report.html)' },
  { key: 'evalEvery', arg: 'epochs', help: 'kNN every N epochs besides the end (0 = only at the end)' },
  { key: 'checkpointEvery', arg: 'epochs', help: 'checkpoint every N epochs (and always at the end)' },
  { key: 'knnK', arg: 'list', help: 'kNN k values, comma separated' },
  {
    key: 'eval',
    arg: 'list',
    help: 'evaluations at the end, comma separated: knn, linear, finetune (each also on the random-init twin; results in <out>/eval/)',
  },
  { key: 'knnLimit', arg: 'n', help: 'embed at most N train images for kNN (0 = all)' },
  { key: 'stepsPerEpoch', arg: 'n', help: 'cap on steps per epoch (0 = the whole training set)' },
  { key: 'stopAfter', arg: 'n', help: 'stop with a checkpoint after N steps of this invocation (resume later)' },
  { key: 'logEvery', arg: 'n', help: 'metrics every N steps (0 = every step)' },
  {
    key: 'spikeFactor',
    arg: 'x',
    help: 'stop when the loss or grad norm exceeds x times its median over the last 50 steps (0 = on NaN/inf only)',
  },
  {
    key: 'distributed',
    arg: 'mode',
    help: 'data parallel over processes: auto (on under mpirun / srun) or off',
    choices: ['auto', 'off'],
  },
  {
    key: 'commTimeout',
    arg: 's',
    help: 'seconds a collective may make no progress before the run stops (a lost or stalled rank)',
  },
  { key: 'bucketMb', arg: 'mb', help: 'gradient all-reduce bucket size in MB (overlapped with the backward pass)' },
];

export interface PretrainCliOptions extends Record<string, unknown> {
  config?: string;
  resume?: string;
  overwrite?: boolean;
  json?: boolean;
}

/**
 * Data parallel: ranks other than 0 print only their warnings, prefixed with the rank (rank 0 prints
 * the run: config, progress, metrics, evaluations, summary).
 */
function rankEvents(launch: Launch): PretrainEvents {
  return {
    info: () => {},
    warn: (line) => console.warn(`warning (rank ${launch.rank} of ${launch.size}): ${line}`),
    progress: () => {},
    metrics: () => {},
    eval: () => {},
  };
}

function textEvents(json: boolean): { events: PretrainEvents; progress: Progress } {
  const progress = new Progress(process.stderr);
  const out = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');
  const events: PretrainEvents = json
    ? {
        info: (line) => out({ event: 'info', message: line }),
        warn: (line) => out({ event: 'warning', message: line }),
        progress: () => {},
        metrics: (m) => out({ event: 'step', ...m }),
        eval: (e) => out({ event: 'eval', ...e }),
      }
    : {
        info: (line) => {
          progress.clear();
          console.log(line);
        },
        warn: (line) => {
          progress.clear();
          console.warn(`warning: ${line}`);
        },
        progress: (p) => progress.update(p),
        activity: (a) => progress.activity(a.what, a.done, a.total),
        metrics: () => {},
        eval: (e) => {
          progress.clear();
          const ks = Object.entries(e.knn)
            .map(([k, v]) => `k=${k} ${(100 * v).toFixed(2)}%`)
            .join(', ');
          console.log(
            `kNN ${e.which} (epoch ${e.epoch}): ${ks} (${e.n_train} bank, ${e.n_val} queries, ${e.seconds.toFixed(1)}s)`,
          );
        },
      };
  return { events, progress };
}

/**
 * The run's config: defaults < the resumed checkpoint's settings < --config file < flags. A resumed
 * run writes to the run folder given to --resume (not the folder saved in the checkpoint, which may
 * be the original of a copy) unless --out says otherwise.
 */
export function pretrainConfig(opts: PretrainCliOptions): PretrainConfig {
  const resume = opts.resume ? readResume(opts.resume) : null;
  const fromFile = opts.config ? readConfigFile(opts.config) : {};
  let saved: Partial<PretrainConfig> = {};
  if (resume) {
    checkSavedTeacher(resume, opts.teacher ?? fromFile.teacher);
    if (opts.out === undefined && fromFile.out === undefined && !resume.runFolder)
      throw new Error(
        `--resume ${opts.resume}: a checkpoint file outside a run folder's checkpoints/: pass --out <folder> for the resumed run`,
      );
    saved = { ...resume.settings, out: resume.runFolder ?? resume.settings.out };
  }
  const file = { ...saved, ...fromFile };
  const { config: _config, resume: _resume, json: _json, overwrite: _overwrite, ...flags } = opts;
  // --teacher-heads (flag, file, or the resumed run's) is the teacher checkpoint's head count when given
  const heads = opts.teacherHeads !== undefined ? Number(opts.teacherHeads) : file.teacherHeads;
  return absolutePaths(applyTeacherCheckpoint(resolveConfig(file, flags as ConfigFlags), { heads }).config);
}

/** The settings that differ from the defaults, wrapped to the terminal, and where the full config goes. */
function describeConfig(c: PretrainConfig): string {
  const width = Math.max(40, (process.stdout.columns ?? 100) - 1);
  const words = (formatConfigChanges(c) || '(all settings at their defaults)').split(/ (?=--)/);
  const lines: string[] = [];
  for (const w of words) {
    const last = lines.length ? lines[lines.length - 1] : null;
    if (last !== null && last.length + 1 + w.length <= width) lines[lines.length - 1] = `${last} ${w}`;
    else lines.push(`  ${w}`);
  }
  return `medic-native pretrain, settings that differ from the defaults:\n${lines.join('\n')}\nfull config: ${join(c.out, 'config.json')}`;
}

export async function runPretrain(opts: PretrainCliOptions): Promise<number> {
  const started = performance.now();
  const c = pretrainConfig(opts);
  const json = !!opts.json;
  const launch = c.distributed === 'auto' ? detectLaunch() : null;
  const quiet = !!launch && launch.size > 1 && launch.rank !== 0;
  const { events: rootEvents, progress } = textEvents(json);
  const events = quiet ? rankEvents(launch) : rootEvents;
  if (quiet) {
    // nothing: rank 0 prints the config
  } else if (json) process.stdout.write(JSON.stringify({ event: 'config', config: c }) + '\n');
  else console.log(describeConfig(c));

  let stopRequested = false;
  const onSigint = () => {
    if (stopRequested) process.exit(130); // a second Ctrl-C: leave now
    stopRequested = true;
    events.warn('interrupt: finishing this step, then writing a checkpoint (Ctrl-C again to quit at once)');
  };
  process.on('SIGINT', onSigint);
  const onSigterm = () => stoppedByLauncher(launch);
  if (launch && launch.size > 1) process.on('SIGTERM', onSigterm);
  try {
    let r: Awaited<ReturnType<typeof pretrain>>;
    try {
      r = await pretrain(c, {
        events,
        resume: opts.resume,
        overwrite: !!opts.overwrite,
        teacherHeads: teacherFile(c) ? c.teacherHeads : undefined,
        interrupted: () => stopRequested,
      });
    } catch (err) {
      abortWorld(err as Error);
      throw err;
    }
    progress.clear();
    if (quiet) return r.status === 'interrupted' ? 130 : r.status === 'diverged' ? 3 : 0;
    const k = Math.max(...c.knnK);
    if (json) process.stdout.write(JSON.stringify({ event: 'summary', ...r }) + '\n');
    else {
      const processes = launch && launch.size > 1 ? launch.size : 1;
      console.log(finishedLine(r, c.batchSize * processes, (performance.now() - started) / 1000));
      console.log(`run folder: ${r.outDir} (report.html, metrics.jsonl, checkpoints/)`);
      if (r.knn) {
        const a = (v?: Record<number, number>) => (v ? `${(100 * v[k]).toFixed(2)}%` : 'n/a');
        console.log(
          `kNN accuracy (k=${k}): ${a(r.knn)} after pretraining, ${a(r.knnRandom)} for the same network at random initialisation`,
        );
      }
    }
    if (r.status === 'interrupted') return 130;
    if (r.status === 'diverged') return 3;
    return 0;
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigterm);
  }
}

/**
 * The end-of-run line: how the run ended and after how long, this invocation's training steps (the
 * loop's wall time, epoch-end evaluations and checkpoints included) and the precision they ran in.
 */
function finishedLine(r: PretrainResult, imagesPerStep: number, totalSec: number): string {
  const { steps, seconds } = r.trained;
  const rate =
    seconds > 0 && steps > 0 ? ` (${Math.round((steps * imagesPerStep) / seconds).toLocaleString('en-US')} img/s)` : '';
  return (
    `${r.status} after ${spellDuration(totalSec)}: ${steps.toLocaleString('en-US')} steps of ${imagesPerStep} images ` +
    `in ${spellDuration(seconds)}${rate}, precision ${r.precision}`
  );
}

/**
 * A rank that fails stops the whole job (MPI_Abort: the launcher ends every rank at once) rather than
 * leaving the others waiting for it in the next all-reduce until --comm-timeout.
 */
function abortWorld(err: Error): void {
  const w = World.active();
  if (!w) return;
  const who = `rank ${w.rank} of ${w.size}`;
  const msg = err.message.startsWith(who) ? err.message : `${who}: ${err.message}`; // collective timeouts name the rank already
  console.error(`medic-native pretrain: ${msg}\nmedic-native pretrain: rank ${w.rank} stops the job (MPI_Abort)`);
  w.abort(1);
}

/** The launcher ends the job (another rank exited or failed): say so instead of vanishing. */
function stoppedByLauncher(launch: Launch | null): void {
  const who = launch ? `rank ${launch.rank} of ${launch.size}` : 'this process';
  console.error(
    `medic-native pretrain: ${who} was stopped by the launcher (SIGTERM), which ends every rank when one exits or fails: ` +
      'its message above names the lost rank. Checkpoints are written atomically: the last one is complete (resume with --resume).',
  );
  process.exit(143);
}

export function registerPretrain(program: Command): void {
  const cmd = program
    .command('pretrain')
    .description(
      'pretrain a ViT student with MEDiC (token distillation + CLS alignment from a CLIP teacher + pixel reconstruction)',
    )
    .option('--config <file>', 'JSON file of settings (the keys of config.json); flags override it')
    .option('--resume <path>', 'continue a run: its folder (the resumed run writes there) or a checkpoint file')
    .option(
      '--overwrite',
      'start a new run in an --out folder that holds one: its files (config, metrics, checkpoints, report, export) are removed first, no other file',
    )
    .option('--json', 'print JSON lines (config, steps, evals, summary) instead of text');
  for (const f of flags) {
    const def = defaultConfig[f.key];
    // Shown as commander's "(default: x)"; a value that comes from the default is dropped before the
    // merge (givenOptions), so that a --config file or a resumed checkpoint is not overridden by it.
    const o = new Option(`${flagOf(f.key)} <${f.arg ?? 'value'}>`, f.help).default(
      def,
      Array.isArray(def) ? def.join(',') : String(def),
    );
    if (f.choices) o.choices(f.choices);
    cmd.addOption(o);
  }
  cmd.showHelpAfterError('(medic-native pretrain --help lists the flags)');
  cmd.addHelpText(
    'after',
    `
Examples:
  $ medic-native pretrain                                   # bundled MNIST digits, bundled digits teacher, minutes on 2 cores
  $ medic-native pretrain --data ~/imagenet --teacher clip-vit-b16.safetensors --model base --epochs 300 --batch-size 1024 \\
      --lr 1.5e-3 --lr-batch-ref 2048 --warmup-epochs 10        # the ViT-B recipe (the defaults are the digit run's)
  $ medic-native pretrain --data idx:./mnist --w-cls 1.0 --mask random --mask-ratio 0.75 --out runs/ablation
  $ medic-native pretrain --resume runs/latest                # continue where a run stopped
  $ medic-native pretrain --config my.json --json > log.jsonl`,
  );
  cmd.action(async (opts: PretrainCliOptions) => {
    const code = await runPretrain(givenOptions(cmd, opts));
    if (code !== 0) process.exitCode = code;
  });
}
