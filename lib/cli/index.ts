// The medic-native command line: one file per command under lib/cli/.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { Command, CommanderError } from 'commander';

import { packageRoot } from '../engine/loader.js';
import { registerDoctor } from './doctor.js';
import { registerEval } from './eval.js';
import { registerMasks } from './masks.js';
import { registerPretrain } from './pretrain.js';

export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
}

export function buildCli(): Command {
  const program = new Command();
  program
    .name('medic-native')
    .description('MEDiC pretraining of Vision Transformers (masked image modeling distilled from CLIP) on a native C++/CUDA engine')
    .version(packageVersion())
    .showHelpAfterError()
    .exitOverride();
  registerPretrain(program);
  registerEval(program);
  registerMasks(program);
  registerDoctor(program);
  return program;
}

/** Runs the CLI; resolves to the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const cli = buildCli();
  try {
    await cli.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    console.error(`medic-native: ${(err as Error).message}`);
    return 1;
  }
}
