// The package entry as a library user sees it: named exports, namespaces, and pretrain() in process.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import * as api from '../../lib/index.js';

const dir = mkdtempSync(join(tmpdir(), 'medic-api-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('public API (lib/index.ts)', () => {
  it('exports the engine, the pretraining entry points and the building blocks under namespaces', () => {
    for (const f of [
      api.Engine.create,
      api.pretrain,
      api.resolveConfig,
      api.makeMasks,
      api.knnClassify,
      api.loadCheckpoint,
      api.writeSafetensors,
      api.exportStudentTimm,
    ])
      expect(typeof f).toBe('function');
    expect(typeof api.models.VisionTransformer).toBe('function');
    expect(typeof api.models.buildMedic).toBe('function');
    expect(typeof api.graph.Graph).toBe('function');
    expect(typeof api.graph.compile).toBe('function');
    expect(typeof api.nn.Linear).toBe('function');
    expect(typeof api.data.DataLoader).toBe('function');
    expect(api.defaultConfig.wCls).toBe(0.4);
  });

  it('runs pretrain() in process with the caller receiving every event', async () => {
    const out = join(dir, 'run');
    const c = api.resolveConfig(
      {},
      {
        data: 'synthetic:64:2',
        imgSize: 16,
        patchSize: 4,
        model: 'micro',
        teacherDim: 32,
        teacherDepth: 1,
        teacherHeads: 2,
        decoderDim: 16,
        decoderDepth: 1,
        decoderHeads: 2,
        batchSize: 16,
        epochs: 2,
        stepsPerEpoch: 2,
        workers: 1,
        threads: 2,
        knnLimit: 32,
        out,
      },
    );
    const steps: api.StepMetrics[] = [];
    const evals: api.EvalRecord[] = [];
    const r = await api.pretrain(c, {
      events: {
        info: () => {},
        warn: (l) => expect.fail(l),
        progress: () => {},
        metrics: (m) => steps.push(m),
        eval: (e) => evals.push(e),
      },
    });
    expect(r.status).toBe('done');
    expect(r.steps).toBe(4);
    expect(steps.map((s) => [s.step, s.epoch])).toEqual([
      [1, 0],
      [2, 0],
      [3, 1],
      [4, 1],
    ]);
    expect(evals.map((e) => e.which)).toEqual(['random-init', 'pretrained']);
    for (const f of ['config.json', 'metrics.jsonl', 'checkpoints/latest.json', 'student-timm.safetensors'])
      expect(existsSync(join(out, f)), f).toBe(true);
    expect(api.readCheckpointState(out).state.dataPosition).toEqual({ epoch: 2, index: 0 });
  });
});
