// The CPU step ratio, fp32 / bf16, measured in pairs. Both ViT-B/16 MEDiC steps (bench/medic_step.ts,
// as bench/gpu_step.ts runs them; another model with --config) are built on one engine and run
// alternately, fp32 bf16 bf16 fp32 ... (each pair's order flipped, so a slow drift of the host weighs
// on both sides alike), and every pair gives one ratio. On a machine whose other tenants move single
// steps by 5-10 %, two processes run minutes apart see different machines; two steps seconds apart
// mostly see the same one, so the pairs' ratios scatter far less than the ratio of two separate runs'
// medians.
//
//   npx tsx bench/step_ratio.ts --threads 1 --clock cpu --pairs 12 --json ratio.json
//   npx tsx bench/step_ratio.ts --threads 2 --clock wall --pairs 12
//   npx tsx bench/step_ratio.ts --config default --threads 2 --pairs 40   (the default run's step:
//       mini student, the bundled digits teacher's architecture, 28 px digits, batch 128)
//   npx tsx bench/step_ratio.ts --config small --batch 2 --pairs 2        (checks the script)
//
// Reported: per pair the two step times and their ratio; the median ratio with a 95 % bootstrap
// interval (resampling the pairs, a fixed seed); the ratio of the two sides' medians and of their
// fastest steps (noise only adds time). The first step of each program is a warm-up, not timed.
import { writeFileSync } from 'node:fs';

import { Engine } from '../lib/engine/index.js';
import type { GraphState } from '../lib/graph/index.js';
import type { MedicConfig } from '../lib/models/index.js';
import { applyTeacherCheckpoint, medicConfigOf } from '../lib/train/build.js';
import { defaultConfig, finalizeConfig } from '../lib/train/config.js';
import { buildStep, makeState, smallConfig, vitB16Config, type MedicStep } from './medic_step.js';
import { clockName, clockOf } from './timing.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : def;
}

function positive(name: string, def: string): number {
  const v = Number(arg(name, def));
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name}: expected a positive integer, got '${arg(name, def)}'`);
  return v;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** 95 % percentile-bootstrap interval of the median of xs (2000 resamples, a fixed LCG seed). */
function bootstrapMedian(xs: number[]): [number, number] {
  let s = 12345;
  const rnd = () => ((s = (s * 1664525 + 1013904223) >>> 0), s / 4294967296);
  const meds: number[] = [];
  for (let r = 0; r < 2000; r++) meds.push(median(xs.map(() => xs[Math.floor(rnd() * xs.length)])));
  meds.sort((a, b) => a - b);
  return [meds[Math.floor(0.025 * meds.length)], meds[Math.ceil(0.975 * meds.length) - 1]];
}

const CONFIGS = ['vitb', 'small', 'default'] as const;
type ConfigName = (typeof CONFIGS)[number];

/** The step's model: ViT-B/16, the test-size one, or what `medic-native pretrain` runs by default. */
function configOf(which: ConfigName, batch: number, precision: 'fp32' | 'bf16'): MedicConfig {
  if (which === 'vitb') return { ...vitB16Config(batch), precision };
  if (which === 'small') return { ...smallConfig(batch), precision };
  const { config } = applyTeacherCheckpoint(finalizeConfig(defaultConfig));
  return medicConfigOf(config, batch, precision);
}

interface Side {
  precision: 'fp32' | 'bf16';
  step: MedicStep;
  state: GraphState;
  prog: ReturnType<GraphState['program']>;
  next: number;
  firstLosses?: number[];
}

async function main(): Promise<void> {
  const threads = Number(arg('threads', '1'));
  const clock = clockName(arg('clock', threads === 1 ? 'cpu' : 'wall'));
  const now = clockOf(clock);
  const pairs = positive('pairs', '12');
  const which = arg('config', 'vitb') as ConfigName;
  if (!CONFIGS.includes(which)) throw new Error(`--config: expected ${CONFIGS.join(', ')}, got '${which}'`);
  const batch = positive('batch', which === 'default' ? String(defaultConfig.batchSize) : '8');
  const jsonPath = arg('json', '');

  const engine = Engine.create({ device: 'cpu', threads });
  const sides: Side[] = [];
  for (const precision of ['fp32', 'bf16'] as const) {
    const step = buildStep(configOf(which, batch, precision), 1);
    const state = await makeState(engine, step.cg, { seed: 1 });
    sides.push({ precision, step, state, prog: state.program(), next: 1 });
  }
  const run = async (side: Side): Promise<number> => {
    const feed = side.step.feed(side.next++);
    const t0 = now();
    const out = await side.prog.run(feed);
    const ms = now() - t0;
    const losses = Array.from(out.outputs.losses as Float32Array);
    if (!losses.every(Number.isFinite))
      throw new Error(`${side.precision} step ${side.next - 1}: a loss is not finite`);
    side.firstLosses ??= losses;
    return ms;
  };
  const [fp32, bf16] = sides;
  await run(fp32); // warm-up: first-touch page faults and packing buffers
  await run(bf16);

  const rows: { fp32Ms: number; bf16Ms: number; ratio: number }[] = [];
  for (let p = 0; p < pairs; p++) {
    // even pairs fp32 first, odd pairs bf16 first
    const f = p % 2 === 0 ? await run(fp32) : 0;
    const b = await run(bf16);
    const fMs = p % 2 === 0 ? f : await run(fp32);
    rows.push({ fp32Ms: fMs, bf16Ms: b, ratio: fMs / b });
    console.error(
      `[step_ratio] pair ${p + 1}/${pairs}: fp32 ${fMs.toFixed(0)} ms, bf16 ${b.toFixed(0)} ms, ${(fMs / b).toFixed(3)}x`,
    );
  }
  const ratios = rows.map((r) => r.ratio);
  const [lo, hi] = bootstrapMedian(ratios);
  const fMs = rows.map((r) => r.fp32Ms),
    bMs = rows.map((r) => r.bf16Ms);
  const result = {
    tool: 'step_ratio',
    device: engine.describe(),
    clock,
    config: which,
    batch,
    order: 'pairs alternate: fp32 then bf16, then bf16 then fp32, ...; one untimed warm-up step each',
    pairs: rows,
    medianRatio: median(ratios),
    medianRatioCI95: [lo, hi],
    ratioRange: [Math.min(...ratios), Math.max(...ratios)],
    medianMs: { fp32: median(fMs), bf16: median(bMs) },
    ratioOfMedians: median(fMs) / median(bMs),
    fastestMs: { fp32: Math.min(...fMs), bf16: Math.min(...bMs) },
    ratioOfFastest: Math.min(...fMs) / Math.min(...bMs),
    firstLosses: { fp32: fp32.firstLosses, bf16: bf16.firstLosses },
    memory: engine.memory(),
  };
  if (jsonPath) writeFileSync(jsonPath, JSON.stringify(result, null, 2) + '\n');
  console.log(
    `[step_ratio] ${result.device}, ${clock} time, batch ${batch}, ${pairs} pairs: median ratio ${result.medianRatio.toFixed(3)}x ` +
      `(95 % CI ${lo.toFixed(3)}-${hi.toFixed(3)}, range ${result.ratioRange.map((r) => r.toFixed(3)).join('-')}); ` +
      `medians fp32 ${result.medianMs.fp32.toFixed(0)} / bf16 ${result.medianMs.bf16.toFixed(0)} ms; ` +
      `fastest ${result.fastestMs.fp32.toFixed(0)} / ${result.fastestMs.bf16.toFixed(0)} ms (${result.ratioOfFastest.toFixed(3)}x)`,
  );
  for (const side of sides) {
    side.prog.dispose();
    side.state.dispose();
  }
  engine.dispose();
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
