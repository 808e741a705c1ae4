// The CLI's main() from the sources (test/helpers/cli.ts spawns this with tsx).
import { main } from '../../lib/cli/index.js';

process.exitCode = await main(process.argv);
