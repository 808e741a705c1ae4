// `pretrain --eval linear,finetune`: after a completed run (its final checkpoint written), the chosen
// protocols run on the run's student and on its random-init twin, each in <out>/eval/<protocol>[-scratch]
// with its own report. They resume where they stopped when the run is started again with --resume.
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { runFinetune } from '../eval/finetune.js';
import { runLinearProbe } from '../eval/linear.js';
import { formatEpoch, type EvalEvents, type FinalEvaluations, type ProtocolPair } from '../eval/protocols.js';
import { extraEvaluations } from './config.js';
import type { TrainRun } from './setup.js';

export async function runFinalEvaluations(run: TrainRun, interrupted?: () => boolean): Promise<FinalEvaluations> {
  const { c, ev } = run;
  const events: EvalEvents = {
    info: (l) => ev.info(l),
    warn: (l) => ev.warn(l),
    progress: (p) => ev.progress(p),
    metrics: () => {},
    epoch: (e) => ev.info(formatEpoch(e)),
  };
  const out: FinalEvaluations = {};
  for (const protocol of extraEvaluations(c)) {
    const pair: ProtocolPair = {};
    for (const fromScratch of [false, true]) {
      const dir = join(c.out, 'eval', fromScratch ? `${protocol}-scratch` : protocol);
      const o = {
        checkpoint: c.out,
        out: dir,
        fromScratch,
        resume: existsSync(join(dir, 'checkpoints', 'latest.json')),
        events,
        interrupted,
      };
      ev.info(`evaluation: ${protocol} on the ${fromScratch ? 'random-init twin' : 'pretrained student'} -> ${dir}`);
      if (protocol === 'linear') {
        const r = await runLinearProbe(o);
        if (r.status !== 'done') return out;
        if (r.best)
          pair[fromScratch ? 'random_init' : 'pretrained'] = {
            head: `block ${r.best.block}`,
            top1: r.best.top1,
            top5: r.best.top5,
          };
      } else {
        const r = await runFinetune(o);
        if (r.status !== 'done') return out;
        if (r.val) pair[fromScratch ? 'random_init' : 'pretrained'] = { head: 'head', ...r.val };
      }
    }
    out[protocol] = pair;
  }
  return out;
}
