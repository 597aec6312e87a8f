import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

// `npm run dev` makes .dev.vars on its first start (scripts/lib/dev-vars.mjs). Two first starts
// at once (two terminals, or dev servers started side by side in a fresh clone) must end with the
// one file every start reads, or a server prints a demo key the file no longer holds.

const root = path.resolve(import.meta.dirname, '../..');
const module = path.join(root, 'scripts/lib/dev-vars.mjs');
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function checkout(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'eag-dev-vars-'));
  dirs.push(dir);
  copyFileSync(path.join(root, '.dev.vars.example'), path.join(dir, '.dev.vars.example'));
  return dir;
}

/** Starts `count` processes that each call devVars(dir) at the same instant; their vars. */
function startTogether(dir: string, count: number): Promise<Record<string, string>[]> {
  const startAt = Date.now() + 300;
  const script = `import { devVars } from ${JSON.stringify(module)};
    while (Date.now() < ${startAt});
    process.stdout.write(JSON.stringify(devVars(${JSON.stringify(dir)}, () => {})));`;
  return Promise.all(Array.from({ length: count }, () => new Promise<Record<string, string>>((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString(); });
    child.stderr.on('data', (chunk: Buffer) => { err += chunk.toString(); });
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as Record<string, string>) : reject(new Error(err))));
  })));
}

describe('.dev.vars on first start', () => {
  it('is made once when several first starts race: every start reads the same secrets, none a placeholder', async () => {
    for (let round = 0; round < 12; round++) {
      const dir = checkout();
      const seen = await startTogether(dir, 4);
      const file = readFileSync(path.join(dir, '.dev.vars'), 'utf8');
      const onDisk = /^DEMO_API_KEY=(.+)$/m.exec(file)?.[1];
      expect(onDisk).toMatch(/^eag_/);
      for (const vars of seen) {
        expect(vars.DEMO_API_KEY).toBe(onDisk);
        expect(vars.ADMIN_TOKEN).toMatch(/^adm_/);
        expect(vars.UPSTREAM_ENCRYPTION_KEY).not.toBe('generate');
      }
      expect(new Set(seen.map((vars) => vars.ADMIN_TOKEN)).size).toBe(1);
      expect(file.match(/^DEMO_API_KEY=/gm)).toHaveLength(1);
      // No temporary file is left beside it.
      expect(readdirSync(dir).sort()).toEqual(['.dev.vars', '.dev.vars.example']);
    }
  }, 30_000);

  it('completes a .dev.vars from before a secret was added, keeping the secrets it has', async () => {
    const dir = checkout();
    writeFileSync(path.join(dir, '.dev.vars'), 'ADMIN_TOKEN=adm_kept\nDEMO_API_KEY=eag_kept\n');
    const [vars] = await startTogether(dir, 1);
    expect(vars).toMatchObject({ ADMIN_TOKEN: 'adm_kept', DEMO_API_KEY: 'eag_kept', ENABLE_CONFORMANCE_UPSTREAM: 'true' });
    expect(Buffer.from(vars!.UPSTREAM_ENCRYPTION_KEY!, 'base64')).toHaveLength(32);
    expect(readFileSync(path.join(dir, '.dev.vars'), 'utf8')).toContain(`UPSTREAM_ENCRYPTION_KEY=${vars!.UPSTREAM_ENCRYPTION_KEY}\n`);
  });
});
