// The medic-native command line: one file per command under lib/cli/.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { Command, CommanderError } from 'commander';

import { packageRoot } from '../engine/loader.js';
import { registerDoctor } from './doctor.js';
import { registerEval } from './eval.js';
import { registerMasks } from './masks.js';
import { registerPretrain } from './pretrain.js';
import { registerSweep } from './sweep.js';

export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
}

export function buildCli(): Command {
  const program = new Command();
  program
    .name('medic-native')
    .description(
      'MEDiC pretraining of Vision Transformers (masked image modeling distilled from CLIP) on a native C++/CUDA engine',
    )
    .version(packageVersion())
    // an error is followed by one line pointing at --help, not by the whole help (each command says its own)
    .showHelpAfterError('(medic-native --help lists the commands)')
    .exitOverride();
  registerPretrain(program);
  registerEval(program);
  registerSweep(program);
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
    // messages that already start with the program's name (the engine loader's) are not prefixed twice
    console.error(`medic-native: ${(err as Error).message.replace(/^medic-native: /, '')}`);
    return 1;
  }
}
