// `medic-native pretrain`: MEDiC pretraining with the effective config printed first, a progress bar
// on a terminal (plain lines otherwise), metrics as JSON lines, checkpoints, kNN at the end.
import { Option, type Command } from 'commander';

import { World, detectLaunch, type Launch } from '../engine/index.js';
import { readCheckpointState } from '../io/checkpoint.js';
import { studentPresets } from '../models/vit.js';
import { applyTeacherCheckpoint } from '../train/build.js';
import { checkConfigKeys, defaultConfig, flagOf, formatConfig, readConfigFile, resolveConfig, type ConfigFlags, type PretrainConfig } from '../train/config.js';
import { pretrain, type PretrainEvents } from '../train/run.js';
import { Progress } from './progress.js';

interface FlagSpec {
  key: keyof PretrainConfig;
  help: string;
  arg?: string;
  choices?: string[];
}

// The flags, in --help order: one per config key (a test checks). Every key can also be set in --config file.json.
export const flags: FlagSpec[] = [
  { key: 'data', arg: 'spec', help: "training data: an image folder (root/<class>/<image>, optional train/ and val/), idx:<dir>, mnist (bundled digits) or synthetic[:n]" },
  { key: 'teacher', arg: 'path', help: "CLIP image encoder checkpoint (safetensors, Hugging Face or OpenAI names), or 'random' for a seeded random CLIP-architecture teacher" },
  { key: 'model', arg: 'name', help: 'student size', choices: Object.keys(studentPresets) },
  { key: 'imgSize', arg: 'px', help: 'image side (0 = auto: 28 for digits, 224 otherwise)' },
  { key: 'patchSize', arg: 'px', help: 'patch side (0 = auto: 7 for digits, 16 otherwise)' },
  { key: 'encoding', arg: 'kind', help: 'sparse: visible tokens only (MEDiC); dense: mask token (MaskDistill)', choices: ['sparse', 'dense'] },
  { key: 'mask', arg: 'kind', help: 'masking', choices: ['block', 'random'] },
  { key: 'maskRatio', arg: 'r', help: 'fraction of patches masked' },
  { key: 'wTok', arg: 'w', help: 'weight of the patch-token distillation loss' },
  { key: 'wCls', arg: 'w', help: 'weight of the CLS alignment loss' },
  { key: 'wPix', arg: 'w', help: 'weight of the pixel reconstruction loss (0 removes the decoder)' },
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
  { key: 'teacherHeads', arg: 'n', help: 'random teacher heads (a checkpoint: config.json beside it, else 64-dim heads)' },
  { key: 'teacherMlpRatio', arg: 'r', help: 'random teacher MLP width / width (a checkpoint brings its own)' },
  { key: 'decoderDim', arg: 'n', help: 'pixel decoder width' },
  { key: 'decoderDepth', arg: 'n', help: 'pixel decoder depth' },
  { key: 'decoderHeads', arg: 'n', help: 'pixel decoder heads' },
  { key: 'cropScale', arg: 's', help: 'RandomResizedCrop smallest area fraction' },
  { key: 'hflip', arg: 'p', help: 'horizontal flip probability (-1 = auto: 0 for digits, 0.5 otherwise)' },
  { key: 'colorJitter', arg: 's', help: 'color jitter strength (0 = off)' },
  { key: 'normalize', arg: 'kind', help: "input normalisation: auto, imagenet, clip, mnist or 'm1,m2,m3/s1,s2,s3'" },
  { key: 'device', arg: 'dev', help: 'auto, cpu, cuda or cuda:N' },
  { key: 'threads', arg: 'n', help: 'CPU threads for the engine (0 = all cores)' },
  { key: 'workers', arg: 'n', help: 'data loader worker threads (decode + augment; 0 = on the main thread)' },
  { key: 'prefetch', arg: 'n', help: 'batches the loader prepares ahead of the trainer' },
  { key: 'seed', arg: 'n', help: 'seed of init, masks, data order and augmentation' },
  { key: 'out', arg: 'dir', help: 'run folder (config.json, metrics.jsonl, checkpoints/, report.html)' },
  { key: 'evalEvery', arg: 'epochs', help: 'kNN every N epochs besides the end (0 = only at the end)' },
  { key: 'checkpointEvery', arg: 'epochs', help: 'checkpoint every N epochs (and always at the end)' },
  { key: 'knnK', arg: 'list', help: 'kNN k values, comma separated' },
  { key: 'knnLimit', arg: 'n', help: 'embed at most N train images for kNN (0 = all)' },
  { key: 'stepsPerEpoch', arg: 'n', help: 'cap on steps per epoch (0 = the whole training set)' },
  { key: 'stopAfter', arg: 'n', help: 'stop with a checkpoint after N steps of this invocation (resume later)' },
  { key: 'logEvery', arg: 'n', help: 'metrics every N steps (0 = every step)' },
  { key: 'distributed', arg: 'mode', help: 'data parallel over processes: auto (on under mpirun / srun) or off', choices: ['auto', 'off'] },
  { key: 'commTimeout', arg: 's', help: 'seconds a collective may make no progress before the run stops (a lost or stalled rank)' },
  { key: 'bucketMb', arg: 'mb', help: 'gradient all-reduce bucket size in MB (overlapped with the backward pass)' },
];

export interface PretrainCliOptions extends Record<string, unknown> {
  config?: string;
  resume?: string;
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
        metrics: () => {},
        eval: (e) => {
          progress.clear();
          const ks = Object.entries(e.knn).map(([k, v]) => `k=${k} ${(100 * v).toFixed(2)}%`).join(', ');
          console.log(`kNN ${e.which} (epoch ${e.epoch}): ${ks} (${e.n_train} bank, ${e.n_val} queries, ${e.seconds.toFixed(1)}s)`);
        },
      };
  return { events, progress };
}

/** The config a checkpoint was trained with, less --stop-after (it counts the steps of one invocation). */
function checkpointConfig(resume: string): Partial<PretrainConfig> {
  const { path, state } = readCheckpointState(resume);
  checkConfigKeys(state.config, `checkpoint ${path}`);
  return { ...(state.config as Partial<PretrainConfig>), stopAfter: 0 };
}

export async function runPretrain(opts: PretrainCliOptions): Promise<number> {
  // Resuming: the checkpoint's config is the base (a --config file and flags still override it), except
  // --stop-after, which counts the steps of one invocation.
  const saved = opts.resume ? checkpointConfig(opts.resume) : {};
  const file = { ...saved, ...(opts.config ? readConfigFile(opts.config) : {}) };
  const { config: _config, resume: _resume, json: _json, ...flags } = opts;
  const c = applyTeacherCheckpoint(resolveConfig(file, flags as ConfigFlags)).config;
  const json = !!opts.json;
  const launch = c.distributed === 'auto' ? detectLaunch() : null;
  const quiet = !!launch && launch.size > 1 && launch.rank !== 0;
  const { events: rootEvents, progress } = textEvents(json);
  const events = quiet ? rankEvents(launch) : rootEvents;
  if (quiet) {
    // nothing: rank 0 prints the config
  } else if (json) process.stdout.write(JSON.stringify({ event: 'config', config: c }) + '\n');
  else console.log(`medic-native pretrain: effective config\n${formatConfig(c)}`);

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
      r = await pretrain(c, { events, resume: opts.resume, interrupted: () => stopRequested });
    } catch (err) {
      abortWorld(err as Error);
      throw err;
    }
    progress.clear();
    if (quiet) return r.status === 'interrupted' ? 130 : r.status === 'diverged' ? 3 : 0;
    const k = Math.max(...c.knnK);
    if (json) process.stdout.write(JSON.stringify({ event: 'summary', ...r }) + '\n');
    else {
      console.log(`run folder: ${r.outDir} (report.html, metrics.jsonl, checkpoints/)`);
      if (r.knn) {
        const a = (v?: Record<number, number>) => (v ? `${(100 * v[k]).toFixed(2)}%` : 'n/a');
        console.log(`kNN accuracy (k=${k}): ${a(r.knn)} after pretraining, ${a(r.knnRandom)} for the same network at random initialisation`);
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
      "its message above names the lost rank. Checkpoints are written atomically: the last one is complete (resume with --resume).",
  );
  process.exit(143);
}

export function registerPretrain(program: Command): void {
  const cmd = program
    .command('pretrain')
    .description('pretrain a ViT student with MEDiC (token distillation + CLS alignment from a CLIP teacher + pixel reconstruction)')
    .option('--config <file>', 'JSON file of settings (the keys of config.json); flags override it')
    .option('--resume <path>', 'continue from a checkpoint file or a run folder (its latest checkpoint)')
    .option('--json', 'print JSON lines (config, steps, evals, summary) instead of text');
  for (const f of flags) {
    const def = defaultConfig[f.key];
    const o = new Option(`${flagOf(f.key)} <${f.arg ?? 'value'}>`, `${f.help} (default ${Array.isArray(def) ? def.join(',') : String(def)})`);
    if (f.choices) o.choices(f.choices);
    cmd.addOption(o);
  }
  cmd.addHelpText(
    'after',
    `
Examples:
  $ medic-native pretrain                                   # bundled MNIST digits, random teacher, minutes on 2 cores
  $ medic-native pretrain --data ~/imagenet --teacher clip-vit-b16.safetensors --model base --epochs 300 --batch-size 1024 \\
      --lr 1.5e-3 --lr-batch-ref 2048 --warmup-epochs 10        # the ViT-B recipe (the defaults are the digit run's)
  $ medic-native pretrain --data idx:./mnist --w-cls 1.0 --mask random --mask-ratio 0.75 --out runs/ablation
  $ medic-native pretrain --resume runs/latest                # continue where a run stopped
  $ medic-native pretrain --config my.json --json > log.jsonl`,
  );
  cmd.action(async (opts: PretrainCliOptions) => {
    const code = await runPretrain(opts);
    if (code !== 0) process.exitCode = code;
  });
}
