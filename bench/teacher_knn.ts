// kNN on a teacher's normalised targets: its CLS target row and the mean of its patch rows, on the
// val split against the train split (DINO protocol, k = 20). Shows which of the two summarises the
// image for a given checkpoint (docs/TEACHER.md, The CLS target).
//
//   npx tsx bench/teacher_knn.ts <data spec> <teacher: file | digits | random> <img px> <patch px>
//   npx tsx bench/teacher_knn.ts mnist digits 28 7
import { Engine } from '../lib/engine/index.js';
import { compile, GraphState } from '../lib/graph/index.js';
import { buildTeacherStep } from '../lib/models/medic.js';
import { loadClipTeacher } from '../lib/io/teacher.js';
import { applyTeacherCheckpoint, medicConfigOf } from '../lib/train/build.js';
import { resolveConfig, normalizationOf, teacherFile } from '../lib/train/config.js';
import { openData, DataLoader, type ImageDataset } from '../lib/data/index.js';
import { knnClassify } from '../lib/eval/knn.js';
const [spec, teacher, img, patch] = process.argv.slice(2);
let c = resolveConfig({}, { data: spec, teacher, imgSize: img, patchSize: patch, threads: '2' });
c = applyTeacherCheckpoint(c).config;
const engine = Engine.create({ threads: 2 });
const B = 100;
const mc = medicConfigOf(c, B);
const ts = buildTeacherStep(mc);
const state = new GraphState(engine, compile(ts.graph));
await state.initNative(c.seed, ['frozen']);
if (teacherFile(c)) loadClipTeacher(state, teacherFile(c)!, { ...mc.teacher, img: c.imgSize });
const prog = state.program();
const data = await openData(c.data, { valFraction: 0.1, splitSeed: 0 });
async function feats(ds: ImageDataset) {
  const loader = new DataLoader(ds, {
    batchSize: B,
    imageSize: c.imgSize,
    train: false,
    workers: 1,
    padLast: true,
    transform: { normalize: normalizationOf(c), cropPct: 1 },
  });
  const cls: number[] = [],
    mean: number[] = [],
    labels: number[] = [];
  for await (const b of loader) {
    const r = await prog.run({ images: b.images });
    const t = r.outputs.targets as Float32Array;
    const T = ts.N + 1;
    const D = t.length / (B * T);
    for (let i = 0; i < b.size; i++) {
      for (let d = 0; d < D; d++) cls.push(t[i * T * D + d]);
      for (let d = 0; d < D; d++) {
        let s = 0;
        for (let k = 1; k < T; k++) s += t[(i * T + k) * D + d];
        mean.push(s / (T - 1));
      }
      labels.push(b.labels[i]);
    }
  }
  await loader.close();
  return {
    cls: Float32Array.from(cls),
    mean: Float32Array.from(mean),
    labels: Int32Array.from(labels),
    D: cls.length / labels.length,
  };
}
const tr = await feats(data.train),
  va = await feats(data.val!);
const K = data.train.classNames.length;
for (const k of ['cls', 'mean'] as const) {
  const r = knnClassify(tr[k], tr.labels, va[k], va.labels, tr.D, K, [20] as never);
  console.log(teacher, k, JSON.stringify(r));
}
process.exit(0);
