/// <reference lib="dom" />
// sweep.html in a real browser: Debian's chromium driven by playwright-core lays out the bar chart
// (an ablation) and the sensitivity curves (the weights preset); no two texts overlap, every chart
// names both axes and stays inside its box. The summaries are made up; their numbers are not checked.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { writeSweepReport, type SweepSummary } from '../../lib/report/sweep.js';
import { defaultConfig } from '../../lib/train/config.js';
import { presetSpec } from '../../lib/sweep/index.js';

const chromiumPath = '/usr/bin/chromium';
const haveChromium = existsSync(chromiumPath);
const dir = mkdtempSync(join(tmpdir(), 'medic-sweep-html-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function summaryOf(preset: string): SweepSummary {
  const spec = presetSpec(preset, 3);
  const cells = spec.cells.map((c, i) => ({
    cell: c.name,
    overrides: c.overrides as Record<string, unknown>,
    n: 3,
    diverged: i === 1 ? 1 : 0,
    knnMean: 0.6 + 0.03 * i,
    knnStd: 0.004 * (i + 1),
    knnRandomMean: 0.55,
    // every cell probed: the report's table grows the linear-probe columns
    linearMean: 0.7 + 0.02 * i,
    linearStd: 0.005,
    linearRandomMean: 0.6,
  }));
  return {
    source: `preset ${preset}`,
    k: 20,
    seeds: 3,
    cells,
    spread: 0.03 * (cells.length - 1),
    best: cells.at(-1)!.cell,
  };
}

async function layout(file: string) {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launchPersistentContext(mkdtempSync(join(dir, 'profile-')), {
    executablePath: chromiumPath,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  try {
    const page = await browser.newPage();
    await page.goto('file://' + file);
    return await page.evaluate(() =>
      [...document.querySelectorAll('svg')].map((svg) => {
        const box = (e: Element) => {
          const r = e.getBoundingClientRect();
          return { x0: r.left, y0: r.top, x1: r.right, y1: r.bottom };
        };
        const texts = [...svg.querySelectorAll('text')].map((t) => ({
          text: (t.textContent ?? '').trim(),
          axis: t.getAttribute('data-axis'),
          ...box(t),
        }));
        return { title: svg.getAttribute('aria-label') ?? '', svg: box(svg), texts };
      }),
    );
  } finally {
    await browser.close();
  }
}

describe.skipIf(!haveChromium)(
  `sweep.html in chromium${haveChromium ? '' : ' (skipped: /usr/bin/chromium is not installed)'}`,
  () => {
    for (const [preset, charts] of [
      ['ablation', 1],
      ['weights', 2],
    ] as const) {
      it(`${preset}: ${charts} chart(s), axis titles, no overlapping text`, async () => {
        const out = join(dir, preset);
        mkdirSync(out, { recursive: true });
        const spec = presetSpec(preset, 3);
        writeSweepReport(out, summaryOf(preset), spec.plot, { ...defaultConfig }, '# table');
        const svgs = await layout(join(out, 'sweep.html'));
        expect(svgs).toHaveLength(charts);
        const problems: string[] = [];
        for (const ch of svgs) {
          expect(
            ch.texts.filter((t) => t.axis === 'x'),
            `${ch.title}: x-axis title`,
          ).toHaveLength(1);
          expect(
            ch.texts.filter((t) => t.axis === 'y'),
            `${ch.title}: y-axis title`,
          ).toHaveLength(1);
          expect(ch.texts.filter((t) => t.axis === 'ytick').length, `${ch.title}: y ticks`).toBeGreaterThanOrEqual(2);
          for (const t of ch.texts)
            if (t.x0 < ch.svg.x0 - 0.5 || t.x1 > ch.svg.x1 + 0.5 || t.y0 < ch.svg.y0 - 0.5 || t.y1 > ch.svg.y1 + 0.5)
              problems.push(`${ch.title}: '${t.text}' leaves the chart`);
          for (let i = 0; i < ch.texts.length; i++)
            for (let j = i + 1; j < ch.texts.length; j++) {
              const a = ch.texts[i];
              const b = ch.texts[j];
              if (a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1)
                problems.push(`${ch.title}: '${a.text}' overlaps '${b.text}'`);
            }
        }
        expect(problems).toEqual([]);
        if (preset === 'weights')
          expect(svgs.map((s) => s.title)).toEqual(['kNN top-1 against wCls', 'kNN top-1 against wPix']);
      });
    }
  },
);
