// What --resume reads before a run starts: the checkpoint's training state (verified, validated) and
// the settings it was trained with, checked on their own so that a damaged checkpoint is blamed on the
// checkpoint and not on a flag the user never passed; and the run folder the resumed run writes to.
import { existsSync } from 'node:fs';

import { readCheckpointState, type TrainState } from '../io/checkpoint.js';
import { runFolderOf } from '../io/run-folder.js';
import { checkConfigKeys, defaultConfig, resolveConfig, type PretrainConfig } from './config.js';

/** Settings added after checkpoint format @1: older checkpoints lack them and get the default. */
const ADDED_LATER = new Set<string>(['spikeFactor', 'teacherPool', 'teacherNormalize']);

export interface ResumeSource {
  /** The checkpoint file. */
  path: string;
  state: TrainState;
  /** The run folder of the --resume argument (null for a checkpoint file kept outside one). */
  runFolder: string | null;
  /** The checkpoint's settings (valid on their own; --stop-after reset: it counts one invocation's steps). */
  settings: Partial<PretrainConfig>;
}

export function readResume(resumeArg: string): ResumeSource {
  const { path, state } = readCheckpointState(resumeArg);
  return { path, state, runFolder: runFolderOf(resumeArg), settings: savedSettings(path, state.config) };
}

/** The settings saved in a checkpoint, checked; throws naming the checkpoint and the setting. */
export function savedSettings(path: string, config: Record<string, unknown>): Partial<PretrainConfig> {
  checkConfigKeys(config, `checkpoint ${path}: its saved config`);
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(defaultConfig)) {
    if (k in config) out[k] = config[k];
    else if (!ADDED_LATER.has(k)) throw new Error(`checkpoint ${path}: its saved config lacks the setting '${k}'`);
  }
  out.stopAfter = 0;
  // Runs saved before teacherPool existed aligned the CLS with the teacher's CLS token, whatever its pooling.
  out.teacherPool ??= 'cls';
  // ... and gave the teacher the student's pixels as they were.
  out.teacherNormalize ??= 'student';
  // The teacher file may have moved since (a --teacher flag can say where): its type is checked here,
  // its existence where the merged config is resolved.
  if (typeof out.teacher !== 'string' || !out.teacher)
    throw new Error(
      `checkpoint ${path}: its saved config has teacher ${JSON.stringify(out.teacher)}, expected a path or 'random'`,
    );
  try {
    resolveConfig({ ...(out as Partial<PretrainConfig>), teacher: 'random' }, {});
  } catch (err) {
    throw new Error(`checkpoint ${path}: its saved config is invalid: ${(err as Error).message}`, { cause: err });
  }
  return out as Partial<PretrainConfig>;
}

/** A saved teacher that no longer exists, with no --teacher given: say so, naming the checkpoint. */
export function checkSavedTeacher(src: ResumeSource, teacherFlag: unknown): void {
  const t = src.settings.teacher!;
  if (teacherFlag === undefined && t !== 'random' && t !== 'digits' && !existsSync(t))
    throw new Error(
      `checkpoint ${src.path} was trained with the teacher ${t}, which no longer exists: pass --teacher <path> with the same CLIP checkpoint`,
    );
}
