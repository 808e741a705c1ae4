// The teacher's input normalisation (lib/io/teacher.ts, --teacher-normalize): where it is read from
// (the 'timm' metadata our export writes, timm's hub config.json, Hugging Face's
// preprocessor_config.json, open_clip_config.json), the defaults without one (CLIP's for a CLIP layout,
// the student's with a note for a timm file), the override and its errors; then that the teacher
// really computes on renormalised pixels: folded into its patch embedding, its targets and attention
// equal those of the unfolded teacher on images renormalised by hand, for timm's layout (conv bias)
// and CLIP's (no conv bias: the position embedding takes the constant), and through a run's setup.
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { NORMALIZATIONS, renormalize, resolveNormalization, type Normalization } from '../../lib/data/transforms.js';
import { Graph, GraphState, compile } from '../../lib/graph/index.js';
import { exportStudentTimm, stateParamSource } from '../../lib/io/export.js';
import { SafetensorsFile, type WriteTensor, writeSafetensors } from '../../lib/io/safetensors.js';
import {
  describeTeacherInput,
  inspectClipCheckpoint,
  loadClipTeacher,
  renormalizeTeacherInput,
  resolveTeacherInput,
} from '../../lib/io/teacher.js';
import { VisionTransformer, buildTeacherStep, type MedicConfig } from '../../lib/models/index.js';
import { teacherProgram } from '../../lib/train/build.js';
import { resolveConfig } from '../../lib/train/config.js';
import type { PretrainEvents } from '../../lib/train/events.js';
import { disposeRun, setupRun } from '../../lib/train/setup.js';
import { cpuEngine, randomF32, relErr } from '../helpers/parity.js';

const fixtures = join(import.meta.dirname, '..', 'fixtures');
const TIMM_LS = join(fixtures, 'timm_teacher_ls.safetensors'); // width 48, 3 blocks, 3 heads (metadata), patch 4, grid 4
const TIMM_PLAIN = join(fixtures, 'timm_teacher_plain.safetensors'); // width 64, no metadata
const HF = join(fixtures, 'clip_ckpt_hf.safetensors'); // width 32, 2 heads (given), patch 4, grid 4
const OPENAI = join(fixtures, 'clip_ckpt_openai.safetensors'); // width 64, 1 head (rule)
const tmp = mkdtempSync(join(tmpdir(), 'teacher-input-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const IMAGENET = resolveNormalization('imagenet');
const CLIP = resolveNormalization('clip');
const CUSTOM: Normalization = { mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3] };
const student = { setting: 'imagenet', norm: IMAGENET };

/** A copy of a checkpoint in its own folder (for the files beside it), with its metadata replaced. */
function copyWith(src: string, name: string, metadata?: Record<string, string>): string {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  const out = join(dir, 'model.safetensors');
  if (!metadata) {
    copyFileSync(src, out);
    return out;
  }
  const f = new SafetensorsFile(src);
  const t: Record<string, WriteTensor> = {};
  try {
    for (const n of f.names()) t[n] = { dtype: 'F32', shape: f.info(n).shape, data: f.readF32(n) };
  } finally {
    f.close();
  }
  writeSafetensors(out, t, metadata);
  return out;
}

const timmMeta = (extra: Record<string, unknown>) => ({
  timm: JSON.stringify({ kwargs: { embed_dim: 48, depth: 3, num_heads: 3, patch_size: 4 }, ...extra }),
});
const withClipMeta = copyWith(TIMM_LS, 'timm-meta', timmMeta({ pretrained_cfg: { mean: CLIP.mean, std: CLIP.std } }));

describe('where the teacher input normalisation comes from', () => {
  it("timm: the 'timm' metadata's pretrained_cfg (what our export writes)", () => {
    const info = inspectClipCheckpoint(withClipMeta);
    expect(info.inputNorm).toEqual({ mean: CLIP.mean, std: CLIP.std, from: `${withClipMeta} ('timm' metadata)` });
    const t = resolveTeacherInput(info, 'auto', student);
    expect(t).toMatchObject({ norm: CLIP, student: IMAGENET, source: `${withClipMeta} ('timm' metadata)`, same: false, notes: [] });
    expect(describeTeacherInput(t, 'imagenet')).toBe(
      `teacher input: clip from ${withClipMeta} ('timm' metadata); the student's (--normalize imagenet) renormalised to it in the teacher's patch embedding`,
    );
  });

  it('our export of a run trained with a custom normalisation is read back as that normalisation', () => {
    const vit = { img: 16, patch: 4, dim: 48, depth: 1, heads: 3, mlpRatio: 2, layerScale: 0 };
    const g = new Graph();
    new VisionTransformer(g, vit);
    const state = new GraphState(cpuEngine(), compile(g));
    const path = join(tmp, 'export.safetensors');
    try {
      exportStudentTimm(path, stateParamSource(state), vit, { normalization: CUSTOM });
    } finally {
      state.dispose();
    }
    const meta = JSON.parse(new SafetensorsFile(path).metadata.timm) as Record<string, unknown>;
    expect(meta.pretrained_cfg).toEqual({ mean: CUSTOM.mean, std: CUSTOM.std });
    const t = resolveTeacherInput(inspectClipCheckpoint(path), 'auto', student);
    expect(t.norm).toEqual(CUSTOM);
    expect(t.source).toBe(`${path} ('timm' metadata)`);
  });

  it("timm: a hub config.json's pretrained_cfg beside the file; HF: preprocessor_config.json; open_clip: open_clip_config.json", () => {
    const hub = copyWith(TIMM_PLAIN, 'timm-hub');
    writeFileSync(join(tmp, 'timm-hub', 'config.json'), JSON.stringify({ architecture: 'vit_x', pretrained_cfg: { mean: CUSTOM.mean, std: CUSTOM.std } }));
    expect(resolveTeacherInput(inspectClipCheckpoint(hub), 'auto', student)).toMatchObject({ norm: CUSTOM, source: join(tmp, 'timm-hub', 'config.json') });

    const hf = copyWith(HF, 'hf-pre');
    writeFileSync(join(tmp, 'hf-pre', 'preprocessor_config.json'), JSON.stringify({ image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5] }));
    expect(resolveTeacherInput(inspectClipCheckpoint(hf, { heads: 2 }), 'auto', student)).toMatchObject({
      norm: { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] },
      source: join(tmp, 'hf-pre', 'preprocessor_config.json'),
    });

    const oc = copyWith(OPENAI, 'open-clip');
    writeFileSync(join(tmp, 'open-clip', 'open_clip_config.json'), JSON.stringify({ preprocess_cfg: { mean: IMAGENET.mean, std: IMAGENET.std } }));
    // the student's own: nothing to renormalise
    expect(resolveTeacherInput(inspectClipCheckpoint(oc), 'auto', student)).toMatchObject({ norm: IMAGENET, same: true, source: join(tmp, 'open-clip', 'open_clip_config.json') });
  });

  it("without one: CLIP's for a CLIP layout; the student's for a timm file, with a note; the student's for the random teacher", () => {
    const clip = resolveTeacherInput(inspectClipCheckpoint(HF, { heads: 2 }), 'auto', student);
    expect(clip).toMatchObject({ norm: CLIP, same: false, notes: [] });
    expect(clip.source).toBe("CLIP's, the default of a Hugging Face checkpoint (no preprocessor_config.json beside the file)");
    expect(resolveTeacherInput(inspectClipCheckpoint(OPENAI), 'auto', student).norm).toEqual(CLIP);

    const timm = resolveTeacherInput(inspectClipCheckpoint(TIMM_PLAIN), 'auto', { setting: 'mnist', norm: resolveNormalization('0.1307,0.1307,0.1307/0.3081,0.3081,0.3081') });
    expect(timm.same).toBe(true);
    expect(timm.notes).toEqual([
      `${TIMM_PLAIN} names no input normalisation (no pretrained_cfg mean/std in its 'timm' metadata, no config.json or preprocessor_config.json beside it): the teacher gets the student's (--normalize mnist); set --teacher-normalize to the one it was trained with`,
    ]);
    expect(resolveTeacherInput(null, 'auto', student)).toMatchObject({ norm: IMAGENET, same: true, notes: [] });
  });

  it('--teacher-normalize overrides (a name, numbers, student); unusable metadata is an error only when it is used', () => {
    const info = inspectClipCheckpoint(withClipMeta);
    expect(resolveTeacherInput(info, 'imagenet', student)).toMatchObject({ norm: IMAGENET, same: true, source: '--teacher-normalize imagenet' });
    expect(resolveTeacherInput(info, '0.5,0.4,0.3/0.2,0.25,0.3', student)).toMatchObject({ norm: CUSTOM, same: false });
    expect(resolveTeacherInput(info, 'student', student)).toMatchObject({ norm: IMAGENET, same: true, source: "--teacher-normalize student: the student's (--normalize imagenet)" });
    expect(resolveTeacherInput(null, 'clip', student)).toMatchObject({ norm: CLIP, same: false });

    const bad = copyWith(TIMM_LS, 'timm-bad', timmMeta({ pretrained_cfg: { mean: [0.5, 0.5, 0.5], std: [0.5, 0, 0.5] } }));
    const badInfo = inspectClipCheckpoint(bad);
    expect(() => resolveTeacherInput(badInfo, 'auto', student)).toThrow(
      `${bad} ('timm' metadata): the input normalisation is not usable: expected mean and std of 3 numbers each (std > 0), found mean [0.5,0.5,0.5], std [0.5,0,0.5]; correct it or set --teacher-normalize`,
    );
    expect(resolveTeacherInput(badInfo, 'clip', student).norm).toEqual(CLIP);
  });

  it('--teacher-normalize is validated with the config', () => {
    expect(resolveConfig({}, {}).teacherNormalize).toBe('auto');
    expect(resolveConfig({}, { teacherNormalize: '0.5,0.5,0.5/0.2,0.2,0.2' }).teacherNormalize).toBe('0.5,0.5,0.5/0.2,0.2,0.2');
    for (const v of ['mnist', 'none', '0.5,0.5/1,1,1', '0.5,0.5,0.5/1,0,1', 'imagenet/'])
      expect(() => resolveConfig({}, { teacherNormalize: v }), v).toThrow(
        `--teacher-normalize: expected auto, student, imagenet, clip or 'm1,m2,m3/s1,s2,s3' (3 means, 3 positive stds), got ${JSON.stringify(v)}`,
      );
  });
});

type Teacher = MedicConfig['teacher'];

/** The teacher program's targets and attention on `images`, its input folded from -> to when given. */
async function teacherOutputs(
  path: string,
  teacher: Teacher,
  img: number,
  images: Float32Array,
  fold?: { from: Normalization; to: Normalization },
): Promise<{ targets: Float32Array; attn: Float32Array }> {
  const cg = compile(buildTeacherStep({ batch: images.length / (3 * img * img), img, teacher }).graph);
  const state = new GraphState(cpuEngine(), cg);
  try {
    loadClipTeacher(state, path, { ...teacher, img });
    if (fold) renormalizeTeacherInput(state, teacher.width, fold.from, fold.to);
    using prog = state.program();
    const out = await prog.run({ images });
    return { targets: out.outputs.targets as Float32Array, attn: out.outputs.attn as Float32Array };
  } finally {
    state.dispose();
  }
}

/** `images` (normalised with `from`) renormalised to `to` by hand. */
function byHand(images: Float32Array, img: number, from: Normalization, to: Normalization): Float32Array {
  const out = Float32Array.from(images);
  renormalize(out, img, from, to);
  return out;
}

describe('the teacher computes on renormalised pixels (folded into its patch embedding)', () => {
  const timm: Teacher = { kind: 'timm', patch: 4, width: 48, layers: 3, heads: 3, layerScale: true, normPre: true };
  const hf: Teacher = { kind: 'clip', patch: 4, width: 32, layers: 2, heads: 2 };
  const cases: [string, string, Teacher, number][] = [
    ['timm (conv bias)', TIMM_LS, timm, 16],
    ['timm at another grid', TIMM_LS, timm, 24],
    ['CLIP, Hugging Face (no conv bias: the position embedding)', HF, hf, 16],
  ];
  for (const [what, path, teacher, img] of cases)
    it(`${what}, image ${img}: equal to the unfolded teacher on images renormalised by hand`, async () => {
      // images as the student's loader gives them: ImageNet-normalised pixels in [0, 1]
      const raw = randomF32(2 * 3 * img * img, 7, 0.5).map((v) => v + 0.5);
      const images = byHand(raw, img, NORMALIZATIONS.none, IMAGENET);
      for (const to of [CLIP, CUSTOM]) {
        const ref = await teacherOutputs(path, teacher, img, byHand(images, img, IMAGENET, to));
        const got = await teacherOutputs(path, teacher, img, images, { from: IMAGENET, to });
        expect(relErr(got.targets, ref.targets)).toBeLessThan(2e-6);
        expect(relErr(got.attn, ref.attn)).toBeLessThan(2e-6);
        // and the renormalisation matters: the teacher on the student's pixels is another teacher
        const plain = await teacherOutputs(path, teacher, img, images);
        expect(relErr(plain.targets, ref.targets)).toBeGreaterThan(1e-2);
      }
    });

  it("through a run's setup: the teacher program gets the metadata's normalisation, or the override's", async () => {
    const lines: string[] = [];
    const events: PretrainEvents = { info: (l) => lines.push(l), warn: (l) => lines.push(l), progress: () => {}, metrics: () => {}, eval: () => {} };
    const img = 16;
    const images = byHand(
      randomF32(4 * 3 * img * img, 9, 0.5).map((v) => v + 0.5),
      img,
      NORMALIZATIONS.none,
      IMAGENET,
    );
    const base = {
      // teacherPool cls: the reference below is the teacher program's CLS-token targets
      data: 'synthetic:16:2', imgSize: img, patchSize: 4, model: 'micro' as const, teacher: withClipMeta, teacherPool: 'cls', batchSize: 4,
      decoderDim: 16, decoderDepth: 1, decoderHeads: 2, threads: 1, workers: 0,
    };
    const targetsOf = async (teacherNormalize: string, out: string, teacherPool = 'cls') => {
      lines.length = 0;
      const run = await setupRun(resolveConfig({}, { ...base, teacherNormalize, teacherPool, out: join(tmp, out) }), {
        events,
      });
      try {
        using prog = teacherProgram(run.c, run.state);
        return (await prog.run({ images })).outputs.targets as Float32Array;
      } finally {
        disposeRun(run);
      }
    };
    const ref = async (to: Normalization) => (await teacherOutputs(withClipMeta, timm, img, byHand(images, img, IMAGENET, to))).targets;

    expect(relErr(await targetsOf('auto', 'run-auto'), await ref(CLIP))).toBeLessThan(2e-6);
    expect(lines).toContain(
      `teacher input: clip from ${withClipMeta} ('timm' metadata); the student's (--normalize imagenet) renormalised to it in the teacher's patch embedding`,
    );
    expect(relErr(await targetsOf('student', 'run-student'), await ref(IMAGENET))).toBeLessThan(1e-7);
    expect(lines).toContain(
      "teacher input: imagenet from --teacher-normalize student: the student's (--normalize imagenet): the student's pixels as they are",
    );
    expect(relErr(await targetsOf('0.5,0.4,0.3/0.2,0.25,0.3', 'run-custom'), await ref(CUSTOM))).toBeLessThan(2e-6);
    // --teacher-pool avg: the teacher program holds its own constants (the pooling weights the training
    // graph lacks); only the CLS row of each image changes.
    const cls = await targetsOf('auto', 'run-cls');
    const avg = await targetsOf('auto', 'run-avg', 'avg');
    const T = cls.length / 4 / 48; // the timm teacher: width 48
    for (let b = 0; b < 4; b++)
      for (let t = 0; t < T; t++) {
        const row = (x: Float32Array) => x.subarray((b * T + t) * 48, (b * T + t + 1) * 48);
        if (t === 0) expect(relErr(row(avg), Float64Array.from(row(cls)))).toBeGreaterThan(1e-2);
        else expect(row(avg)).toEqual(row(cls));
      }
  });
});
