import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { root } from './dev-server';

// `npm run dev`'s options, as a new user first tries them (README, Development): each case runs
// the script in an empty directory, where it must answer before it creates .dev.vars, applies
// migrations or starts wrangler. `--help`, an unknown option and a malformed one used to end
// in Node's ERR_PARSE_ARGS_UNKNOWN_OPTION stack trace, naming none of the options it takes.
const dir = mkdtempSync(path.join(tmpdir(), 'eag-dev-options-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function script(file: string, ...args: string[]) {
  const result = spawnSync(process.execPath, [path.join(root, file), ...args], {
    cwd: dir,
    encoding: 'utf8',
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false' },
    timeout: 30_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}
const dev = (...args: string[]) => script('scripts/dev.mjs', ...args);

describe('npm run dev: --help and bad options answer plainly and touch nothing', () => {
  it('--help prints the options and exits 0', () => {
    const { status, stdout, stderr } = dev('--help');
    expect(stderr).not.toContain('ERR_PARSE_ARGS');
    expect(status).toBe(0);
    for (const option of ['--port', '--persist-to', '--inspector-port', '--var NAME:VALUE', '--quiet']) expect(stdout).toContain(option);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('an unknown option is named in one line with the usage, exit 1, no stack trace', () => {
    const { status, stderr } = dev('--prot', '9000');
    expect(status).toBe(1);
    expect(stderr).toContain("npm run dev: Unknown option '--prot'");
    expect(stderr).toContain('--port N');
    expect(stderr).not.toMatch(/\n\s+at /);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a --var without NAME:VALUE is refused before wrangler starts', () => {
    const { status, stderr } = dev('--var', 'MCP_ALLOWED_ORIGINS');
    expect(status).toBe(1);
    expect(stderr).toContain('--var takes NAME:VALUE, not "MCP_ALLOWED_ORIGINS"');
    expect(readdirSync(dir)).toEqual([]);
  });
});

// The other scripts README's Development table names: `--help` used to end in the same stack
// trace, and bench:primitives, which read no options, ran its benchmark whatever it was given.
describe('the bench and chaos scripts: --help answers at once, a bad option is refused before any run', () => {
  const scripts: Array<[string, string, string]> = [
    ['bench', 'bench/harness.mjs', '--quick'],
    ['bench:compare', 'bench/compare.mjs', '--scenario'],
    ['bench:edge', 'bench/edge.mjs', '--scenario'],
    ['bench:primitives', 'bench/primitives.mjs', 'no options'],
    ['bench:residency', 'bench/residency.mjs', '--objects'],
    ['bench:stalls', 'bench/stalls.mjs', '--control'],
    ['test:chaos', 'test/chaos/chaos.mjs', '--short'],
  ];
  for (const [name, file, named] of scripts) {
    it(`npm run ${name}`, () => {
      const help = script(file, '--help');
      expect(help.stderr).not.toContain('ERR_PARSE_ARGS');
      expect(help.status).toBe(0);
      expect(help.stdout).toContain(`usage: npm run ${name}`);
      expect(help.stdout).toContain(named);
      const bad = script(file, '--no-such-option');
      expect(bad.status).toBe(1);
      expect(bad.stderr).toContain(`npm run ${name}: Unknown option '--no-such-option'`);
      expect(bad.stderr).not.toMatch(/\n\s+at /);
    });
  }
});
