// No import cycles in lib/ (issue 9): a cycle makes module order matter and hides which folder
// depends on which. The checker (madge, as `npm run check:cycles` runs it) is first shown a planted
// cycle, so that a broken checker cannot pass lib/ silently.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import madge from 'madge';
import { afterAll, describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const tmp = mkdtempSync(join(tmpdir(), 'medic-cycles-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const scan = (dir: string) => madge(dir, { fileExtensions: ['ts'], tsConfig: join(root, 'tsconfig.json') });

describe('import cycles', () => {
  it('the checker finds a planted cycle (a -> b -> a, through a type-only import and a .js specifier)', async () => {
    writeFileSync(join(tmp, 'a.ts'), "import { b } from './b.js';\nexport const a = (): number => b + 1;\n");
    writeFileSync(
      join(tmp, 'b.ts'),
      "import type { a } from './a.js';\nexport const b = 1;\nexport type A = typeof a;\n",
    );
    writeFileSync(join(tmp, 'c.ts'), "import { a } from './a.js';\nexport const c = a();\n");
    expect((await scan(tmp)).circular()).toEqual([['a.ts', 'b.ts']]);
  });

  it('lib/ has none', async () => {
    const res = await scan(join(root, 'lib'));
    expect(res.circular().map((c) => c.join(' -> '))).toEqual([]);
    // An empty scan must not pass: the whole tree was read.
    expect(Object.keys(res.obj()).length).toBeGreaterThan(60);
  });
});
