// Command-line options of the npm scripts (dev, bench*, test:chaos): node's parseArgs, plus
// `--help`, and a refusal a person can read. An unknown or malformed option used to end in
// parseArgs' stack trace, and a script that read no options (bench:primitives) ran whatever
// it was given, `--help` included: a benchmark on a shared machine.
import { parseArgs } from 'node:util';

/**
 * `config` parsed as parseArgs would, with `--help` added: `--help` prints `usage` and exits 0;
 * a bad option prints one line naming it, then `usage`, and exits 1, before the script does anything.
 */
export function cliArgs(script, usage, config = {}) {
  let parsed;
  try {
    parsed = parseArgs({ ...config, options: { ...config.options, help: { type: 'boolean', default: false } } });
  } catch (error) {
    console.error(`npm run ${script}: ${error.message}\n${usage}`);
    process.exit(1);
  }
  if (parsed.values.help) {
    console.log(usage);
    process.exit(0);
  }
  return parsed;
}
