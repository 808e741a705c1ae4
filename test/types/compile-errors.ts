// Mistakes the types must catch: every line after a @ts-expect-error is a type error today, and
// `npm run typecheck` fails as soon as one of them compiles (an unused @ts-expect-error is itself an
// error). Never run; tsc checks it with the rest of test/.
import { Engine, resolveConfig } from '../../lib/index.js';
import type { Graph } from '../../lib/graph/index.js';

export function mistakes(engine: Engine, g: Graph): void {
  // Config keys: unknown ones, from the file layer or the flags layer, and values of the wrong type.
  // @ts-expect-error 'bogus' is not a config key
  resolveConfig({ bogus: 1 });
  // @ts-expect-error 'epochz' is not a config key
  resolveConfig({}, { epochz: '3' });
  // @ts-expect-error a file value has the key's type (flags may also be strings)
  resolveConfig({ epochs: 'ten' });
  // @ts-expect-error the flags layer takes config keys, not CLI-only options
  resolveConfig({}, { resume: 'runs/latest' });

  // Devices: 'auto' | 'cpu' | 'cuda' | `cuda:${number}`.
  // @ts-expect-error no such device
  Engine.create({ device: 'tpu' });
  // @ts-expect-error the index is a number
  Engine.create({ device: 'cuda:first' });

  // Op names come from the op table (native/include/medic/ops.h).
  // @ts-expect-error misspelt op
  engine.op('gem', [], []);
  // @ts-expect-error not an op
  g.emit('conv2d', [], []);
}

export function correct(engine: Engine, g: Graph): void {
  resolveConfig({ epochs: 3 }, { epochs: '7', knnK: '10,20', device: 'cuda:1' });
  Engine.create({ device: 'cuda:1' }).dispose();
  Engine.create({ device: 'auto' }).dispose();
  engine.op('gemm', [], []);
  g.emit('add', [], []);
}
