// A run folder (--out) and what this program writes in it. A new run never mixes with files of an
// earlier one: pretrain refuses a folder that holds a run unless told to continue it (--resume) or
// to replace it (--overwrite), and replacing removes only the files listed here, never anything else.
import { existsSync, readdirSync, readFileSync, rmdirSync, statSync, unlinkSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

/** Files a run writes at the top of its folder. */
export const RUN_FILES = [
  'config.json',
  'metrics.jsonl',
  'report.html',
  'summary.json',
  'student-timm.safetensors',
] as const;
const CHECKPOINT_FILE = /^step-\d+\.safetensors$/;
// Temporaries of an atomic write (name.tmp-PID), for the names above only.
const TEMP_FILE =
  /^(config\.json|metrics\.jsonl|report\.html|summary\.json|student-timm\.safetensors|latest\.json|step-\d+\.safetensors)\.tmp-(\d+)$/;

/** This program's files in a run folder, relative to it (checkpoints included). */
export function runFiles(dir: string): string[] {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) return [];
  const found: string[] = RUN_FILES.filter((f) => existsSync(join(dir, f)));
  const ck = join(dir, 'checkpoints');
  if (existsSync(ck) && statSync(ck).isDirectory())
    for (const f of readdirSync(ck).sort())
      if (f === 'latest.json' || CHECKPOINT_FILE.test(f)) found.push(`checkpoints/${f}`);
  return found;
}

/** A short description of the run a folder holds ("checkpoint at step 10, config.json, ..."), or null. */
export function describeRun(dir: string): string | null {
  const files = runFiles(dir);
  if (!files.length) return null;
  let step = '';
  try {
    const l = JSON.parse(readFileSync(join(dir, 'checkpoints', 'latest.json'), 'utf8')) as { step?: unknown };
    if (typeof l.step === 'number') step = `a checkpoint at step ${l.step}; `;
  } catch {
    /* no or unreadable latest.json: the file list says enough */
  }
  return `${step}${files.slice(0, 4).join(', ')}${files.length > 4 ? `, ... (${files.length} files)` : ''}`;
}

/** Removes this program's files from a run folder (not the folder, not other files); returns them. */
export function removeRunFiles(dir: string): string[] {
  const files = runFiles(dir);
  for (const f of files) unlinkSync(join(dir, f));
  removeStaleTemporaries(dir);
  const ck = join(dir, 'checkpoints');
  if (existsSync(ck) && readdirSync(ck).length === 0) rmdirSync(ck);
  return files;
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // exists, another user's
  }
}

/**
 * Removes the temporaries an atomic write leaves when its process is killed mid-save
 * (`step-*.safetensors.tmp-PID`, `latest.json.tmp-PID`, ...), unless that process still runs.
 */
export function removeStaleTemporaries(dir: string): string[] {
  const removed: string[] = [];
  for (const d of [dir, join(dir, 'checkpoints')]) {
    if (!existsSync(d) || !statSync(d).isDirectory()) continue;
    for (const f of readdirSync(d)) {
      const m = TEMP_FILE.exec(f);
      if (!m || alive(Number(m[2]))) continue;
      unlinkSync(join(d, f));
      removed.push(join(d, f));
    }
  }
  return removed;
}

/**
 * The run folder of a --resume argument: a run folder itself, the run folder of its checkpoints/
 * folder, or of a checkpoint file inside checkpoints/. null for a checkpoint file kept elsewhere.
 */
export function runFolderOf(resumePath: string): string | null {
  const p = resolve(resumePath);
  if (existsSync(p) && statSync(p).isDirectory()) {
    if (basename(p) === 'checkpoints' && !existsSync(join(p, 'checkpoints'))) return dirname(p);
    return p;
  }
  return basename(dirname(p)) === 'checkpoints' ? dirname(dirname(p)) : null;
}
