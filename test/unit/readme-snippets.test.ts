// Every code snippet of README.md works as shown (issue 10, item 15): the TypeScript ones are valid
// JavaScript for this Node (20 is the floor; `node --check`) and run through tsx with 'medic-native'
// pointing at the sources; the shell ones name only commands and flags the CLI has.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { buildCli } from '../../lib/cli/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const dir = mkdtempSync(join(tmpdir(), 'medic-readme-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function snippets(lang: string): string[] {
  const re = new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g');
  return [...readme.matchAll(re)].map((m) => m[1]);
}

describe('README snippets', () => {
  const ts = snippets('ts');
  it('has TypeScript and shell snippets', () => {
    expect(ts.length).toBeGreaterThanOrEqual(2);
    expect(snippets('sh').length).toBeGreaterThanOrEqual(2);
  });

  ts.forEach((code, i) => {
    it(`TypeScript snippet ${i + 1} runs on Node ${process.versions.node}`, () => {
      const file = join(dir, `snippet-${i + 1}.mts`);
      const source = code.replace(/from 'medic-native'/g, `from '${join(root, 'lib', 'index.ts')}'`);
      writeFileSync(file, source);
      writeFileSync(file.replace(/\.mts$/, '.mjs'), source);
      // valid JavaScript for this Node as written (no syntax it lacks, such as `using` on Node 20)
      const check = spawnSync(process.execPath, ['--check', file.replace(/\.mts$/, '.mjs')], { encoding: 'utf8' });
      expect(check.stderr).toBe('');
      const r = spawnSync(
        process.execPath,
        ['--import', join(root, 'node_modules', 'tsx', 'dist', 'loader.mjs'), file],
        {
          cwd: dir,
          env: { ...process.env, CI: '1' },
          encoding: 'utf8',
          timeout: 120_000,
        },
      );
      expect(r.stderr).not.toMatch(/SyntaxError|Error:/);
      expect(r.status, r.stderr).toBe(0);
    });
  });

  it('shell snippets use only commands and flags the CLI has', () => {
    const program = buildCli();
    const lines = snippets('sh')
      .join('\n')
      .replace(/\\\n\s*/g, ' ')
      .split('\n')
      .map((l) => l.replace(/#.*$/, '').trim())
      .flatMap((l) => l.split('&&').map((x) => x.trim()))
      .filter((l) => /^(npx )?medic-native /.test(l));
    expect(lines.length).toBeGreaterThan(3);
    for (const line of lines) {
      const words = line.replace(/^npx /, '').split(/\s+/).slice(1);
      let cmd = program;
      while (words.length && !words[0].startsWith('-')) {
        const sub = cmd.commands.find((c) => c.name() === words[0]);
        if (!sub) break;
        cmd = sub;
        words.shift();
      }
      expect(cmd, line).not.toBe(program);
      const known = new Set(cmd.options.flatMap((o) => [o.long, o.short]).filter(Boolean));
      for (const w of words.filter((x) => x.startsWith('--'))) expect(known.has(w), `${line}: ${w}`).toBe(true);
    }
  });
});
