/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
// report.html in a real browser (issue 10, item 17): Debian's chromium driven by playwright-core lays
// the report out; no two pieces of chart text overlap, every chart has both axis titles. With
// MEDIC_UPDATE_SCREENSHOT=1 the page is saved as docs/report.png (the README shows it).
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { resolveConfig } from '../../lib/train/config.js';
import { writeReport } from '../../lib/report/html.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const chromiumPath = '/usr/bin/chromium';
const haveChromium = existsSync(chromiumPath);
const dir = mkdtempSync(join(tmpdir(), 'medic-report-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** metrics.jsonl of a plausible 4-epoch run: falling losses, a warmup-then-cosine lr, steady throughput. */
function writeMetrics(out: string, steps = 280, perEpoch = 70): void {
  const lines: string[] = [];
  for (let s = 1; s <= steps; s++) {
    const f = s / steps;
    const lr =
      s <= perEpoch
        ? (1.5e-3 * s) / perEpoch
        : 1e-5 + 0.5 * (1.5e-3 - 1e-5) * (1 + Math.cos((Math.PI * (s - perEpoch)) / (steps - perEpoch)));
    const tok = 0.45 * Math.exp(-3 * f) + 0.05 + 0.01 * Math.sin(s);
    const cls = 9 * Math.exp(-4 * f) + 0.3;
    const pix = 0.9 * Math.exp(-1.5 * f) + 0.2;
    lines.push(
      JSON.stringify({
        step: s,
        epoch: Math.floor((s - 1) / perEpoch),
        loss: tok + 0.4 * cls + pix,
        l_tok: tok,
        l_cls: cls,
        l_pix: pix,
        grad_norm: 30 * Math.exp(-2 * f) + 2 + Math.sin(s / 3),
        lr,
        wd: 0.05 * (1 - f),
        step_ms: 40 + 5 * Math.sin(s / 7),
        wait_ms: s % perEpoch === 1 ? 120 : 0.02 + 0.01 * Math.sin(s),
        img_s: 2900 + 200 * Math.sin(s / 11),
      }),
    );
  }
  writeFileSync(join(out, 'metrics.jsonl'), lines.join('\n') + '\n');
}

describe.skipIf(!haveChromium)(
  `report.html in chromium${haveChromium ? '' : ' (skipped: /usr/bin/chromium is not installed; apt-get install chromium)'}`,
  () => {
    it('lays out charts whose text never overlaps, each with axis titles; and takes a screenshot', async () => {
      const { chromium } = await import('playwright-core');
      const out = join(dir, 'run');
      const { mkdirSync } = await import('node:fs');
      mkdirSync(out, { recursive: true });
      writeMetrics(out);
      const c = resolveConfig({}, { out, epochs: 4 });
      // generated, as the curves
      writeReport(out, c, {
        knn: { 10: 0.5125, 20: 0.505 },
        knnRandom: { 10: 0.4375, 20: 0.43 },
        precision: 'bf16',
        trained: { steps: 280, seconds: 12.6 },
      });

      const profile = mkdtempSync(join(dir, 'profile-'));
      const browser = await chromium.launchPersistentContext(profile, {
        executablePath: chromiumPath,
        headless: true,
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
        viewport: { width: 1280, height: 900 },
      });
      try {
        const page = await browser.newPage();
        await page.goto('file://' + join(out, 'report.html'));
        const charts = await page.evaluate(() =>
          [...document.querySelectorAll('svg')].map((svg) => {
            const box = (e: Element) => {
              const r = e.getBoundingClientRect();
              return { x0: r.left, y0: r.top, x1: r.right, y1: r.bottom };
            };
            const texts = [...svg.querySelectorAll('text')]
              .filter((t) => (t.textContent ?? '').trim() !== '')
              .map((t) => ({ text: t.textContent!.trim(), axis: t.getAttribute('data-axis'), ...box(t) }));
            return { title: svg.getAttribute('aria-label') ?? '', svg: box(svg), texts };
          }),
        );
        expect(charts.length).toBeGreaterThanOrEqual(5);
        const overlaps: string[] = [];
        for (const ch of charts) {
          // every chart names both axes
          expect(ch.texts.filter((t) => t.axis === 'x').length, `${ch.title}: x-axis title`).toBe(1);
          expect(ch.texts.filter((t) => t.axis === 'y').length, `${ch.title}: y-axis title`).toBe(1);
          for (const t of ch.texts) {
            // inside the chart
            if (t.x0 < ch.svg.x0 - 0.5 || t.x1 > ch.svg.x1 + 0.5 || t.y0 < ch.svg.y0 - 0.5 || t.y1 > ch.svg.y1 + 0.5)
              overlaps.push(`${ch.title}: '${t.text}' leaves the chart`);
          }
          for (let i = 0; i < ch.texts.length; i++)
            for (let j = i + 1; j < ch.texts.length; j++) {
              const a = ch.texts[i];
              const b = ch.texts[j];
              if (a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1)
                overlaps.push(`${ch.title}: '${a.text}' overlaps '${b.text}'`);
            }
          // at least four labelled y ticks: more than min / mid / max
          expect(ch.texts.filter((t) => t.axis === 'ytick').length, `${ch.title}: y ticks`).toBeGreaterThanOrEqual(4);
        }
        // charts do not overlap one another
        for (let i = 0; i < charts.length; i++)
          for (let j = i + 1; j < charts.length; j++) {
            const a = charts[i].svg;
            const b = charts[j].svg;
            if (a.x0 < b.x1 - 0.5 && b.x0 < a.x1 - 0.5 && a.y0 < b.y1 - 0.5 && b.y0 < a.y1 - 0.5)
              overlaps.push(`charts '${charts[i].title}' and '${charts[j].title}' overlap`);
          }
        expect(overlaps).toEqual([]);
        // the loss axis says it is logarithmic; loader wait has a chart of its own
        const titles = charts.map((ch) => ch.title);
        expect(charts.find((ch) => /loss/i.test(ch.title))!.texts.find((t) => t.axis === 'y')!.text).toMatch(/log/);
        expect(titles.filter((t) => /wait/i.test(t))).toHaveLength(1);
        expect(titles.filter((t) => /img\/s|throughput/i.test(t) && !/wait/i.test(t))).toHaveLength(1);
        // the throughput card names the precision and the training time, laid out inside the card
        const sub = await page.evaluate(() => {
          const card = [...document.querySelectorAll('.card')].find((c) => /throughput/.test(c.textContent ?? ''))!;
          const line = card.querySelector('.sub')!;
          const [c, l] = [card.getBoundingClientRect(), line.getBoundingClientRect()];
          return { text: line.textContent, inside: l.left >= c.left && l.right <= c.right && l.bottom <= c.bottom };
        });
        expect(sub.text).toMatch(/^precision bf16; 280 steps in 13\u00a0s; mean loader wait/);
        expect(sub.inside).toBe(true);
        // docs/report.png (the README's picture) is refreshed on request only, so that a test run leaves
        // the working tree as it was; the run folder is shown as a stable name there.
        await page.evaluate(() =>
          document.querySelector('.where')!.replaceChildren('runs/example (generated metrics)'),
        );
        const shot = process.env.MEDIC_UPDATE_SCREENSHOT ? join(root, 'docs', 'report.png') : join(dir, 'report.png');
        await page.screenshot({ path: shot, fullPage: true });
        expect(existsSync(shot)).toBe(true);
      } finally {
        await browser.close();
      }
    });
  },
);
