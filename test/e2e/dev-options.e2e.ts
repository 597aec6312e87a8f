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

function dev(...args: string[]) {
  const result = spawnSync(process.execPath, [path.join(root, 'scripts/dev.mjs'), ...args], {
    cwd: dir,
    encoding: 'utf8',
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false' },
    timeout: 30_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

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
