// Options as the user gave them. Flags show their defaults in --help through commander's .default(),
// which also fills the value in; a value that came from a default is dropped here, so that the merge
// of defaults < --config file < resumed checkpoint < flags sees only the flags actually given.
import type { Command } from 'commander';

export function givenOptions<T extends object>(cmd: Command, opts: T): T {
  return Object.fromEntries(Object.entries(opts).filter(([k]) => cmd.getOptionValueSource(k) !== 'default')) as T;
}
