// OP_NAMES (lib/engine/ops.ts) is the TypeScript mirror of the op table MEDIC_OP_LIST in
// native/include/medic/ops.h: the header is parsed here and the lists must be equal, in order, as
// must the names the loaded binary reports.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { loadBinding } from '../../lib/engine/loader.js';
import { OP_NAMES } from '../../lib/engine/ops.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The op names of `#define MEDIC_OP_LIST(X)`: every X(name, ...) row up to the end of the macro. */
export function parseOpList(header: string): string[] {
  const start = header.indexOf('#define MEDIC_OP_LIST(X)');
  if (start < 0) throw new Error('ops.h: no #define MEDIC_OP_LIST(X)');
  const lines = header.slice(start).split('\n');
  const names: string[] = [];
  for (const line of lines.slice(1)) {
    const m = /^\s*X\((\w+)\s*,/.exec(line);
    if (!m) break;
    names.push(m[1]);
    if (!line.trimEnd().endsWith('\\')) break; // the macro's last row
  }
  return names;
}

describe('op names', () => {
  it('the parser reads a macro row by row and stops where the macro ends', () => {
    const h =
      '#define MEDIC_OP_LIST(X) \\\n  X(a, 1, 1, 1, 1) \\\n  X(b_bwd, 2, 2, 1, 1)\n\n  X(not_in_the_list, 0, 0, 0, 0)\n';
    expect(parseOpList(h)).toEqual(['a', 'b_bwd']);
  });

  it('OP_NAMES is MEDIC_OP_LIST of native/include/medic/ops.h, in order', () => {
    const header = readFileSync(join(root, 'native', 'include', 'medic', 'ops.h'), 'utf8');
    const parsed = parseOpList(header);
    expect(parsed.length).toBeGreaterThan(20);
    expect([...OP_NAMES]).toEqual(parsed);
  });

  it('the loaded binary reports the same names', () => {
    expect(loadBinding('cpu').binding.opNames()).toEqual([...OP_NAMES]);
  });
});
