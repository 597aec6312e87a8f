import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../scripts/deploy-ids.mjs';
import { root } from './dev-server';

// scripts/deploy-ids.mjs, which `npm run deploy` and `npm run deploy:staging` run before
// `wrangler deploy` and `npm run deploy:check` runs as a warning: the shipped wrangler.toml
// holds placeholder D1 and KV ids, which a deploy must not take for real ones. It used to
// pass every check with them. Run as the npm scripts run it, on the shipped file and on
// copies with ids an operator set (here in a temporary directory: wrangler reads the config alone).

/**
 * The script's exit code and output, as `node scripts/deploy-ids.mjs ARGS` gives them. It runs
 * in this process: each process would load wrangler again, seconds on a busy machine.
 */
async function run(...args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const spies = [
    vi.spyOn(console, 'log').mockImplementation((...line: unknown[]) => { out.push(line.join(' ')); }),
    vi.spyOn(console, 'warn').mockImplementation((...line: unknown[]) => { err.push(line.join(' ')); }),
    vi.spyOn(console, 'error').mockImplementation((...line: unknown[]) => { err.push(line.join(' ')); }),
  ];
  try {
    const status = await main(args);
    return { status, stdout: out.join('\n'), stderr: err.join('\n') };
  } finally {
    for (const spy of spies) spy.mockRestore();
  }
}

const shipped = readFileSync(path.join(root, 'wrangler.toml'), 'utf8');
const dir = mkdtempSync(path.join(os.tmpdir(), 'eag-deploy-ids-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('deploy ids: placeholders refuse a deploy and are named with the commands that create them', () => {
  it('refuses the shipped ids (each named, with its section and create command), passes ids an operator set; --warn reports and exits 0', async () => {
    const config = path.join(dir, 'wrangler.toml');
    writeFileSync(config, shipped
      .replace('00000000-0000-0000-0000-000000000002', '4f1c9a2e-7b3d-4e8a-9c61-2d5f0b7e83a4')
      .replace('"00000000000000000000000000000002"', '"9e4b2c7a1f8d4e3b6a0c5d9f2b7e1a48"')
      .replace('"00000000000000000000000000000001"', '"<your KV namespace id>"'));
    const refused = await run('staging', 'production');
    const deployable = await run('--config', config, 'production');
    const warned = await run('--warn', '--config', config, 'staging', 'production');

    expect(refused.status).toBe(1);
    for (const [env, n] of [['staging', 1], ['production', 2]] as const) {
      expect(refused.stderr).toContain(`deploy check ${env}: NOT DEPLOYABLE YET: wrangler.toml still has placeholder ids (set them in [env.${env}])`);
      expect(refused.stderr).toContain(`d1_databases DB: database_id "00000000-0000-0000-0000-00000000000${n}" is a placeholder; create it with \`npx wrangler d1 create edge-agent-gateway-${env}\``);
      expect(refused.stderr).toContain(`kv_namespaces CACHE: id "0000000000000000000000000000000${n}" is a placeholder; create it with \`npx wrangler kv namespace create CACHE --env ${env}\``);
      expect(refused.stderr).toContain(`refused: ${env} cannot be deployed until these ids are set`);
    }
    // The npm scripts run it before they deploy, so a refusal stops the deploy.
    const scripts = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
    expect(scripts.deploy).toBe('node scripts/deploy-ids.mjs production && wrangler deploy --env production');
    expect(scripts['deploy:staging']).toBe('node scripts/deploy-ids.mjs staging && wrangler deploy --env staging');

    expect(deployable.status, deployable.stderr).toBe(0);
    expect(deployable.stdout).toContain('deploy check production: ids set (D1 and KV)');

    expect(warned.status, warned.stderr).toBe(0);
    expect(warned.stderr).toContain('d1_databases DB: database_id "00000000-0000-0000-0000-000000000001" is a placeholder');
    expect(warned.stderr).toContain('kv_namespaces CACHE: id "<your KV namespace id>" is not a KV namespace id (32 hex digits)');
    expect(warned.stderr).toContain('(a warning here: `npm run deploy:check -- --env staging` and the deploy scripts refuse)');
    expect(warned.stderr).not.toContain('refused');
    expect(warned.stdout).toContain('deploy check production: ids set (D1 and KV)');
  });
});

describe('deploy ids: an environment never takes another environment\'s database or namespace', () => {
  it('refuses staging whose D1 and KV ids are production\'s (a copied id), naming both; each with its own passes', async () => {
    const productionDb = '4f1c9a2e-7b3d-4e8a-9c61-2d5f0b7e83a4';
    const productionKv = '9e4b2c7a1f8d4e3b6a0c5d9f2b7e1a48';
    const withIds = (stagingDb: string, stagingKv: string) => shipped
      .replace('00000000-0000-0000-0000-000000000002', productionDb)
      .replace('"00000000000000000000000000000002"', `"${productionKv}"`)
      .replace('00000000-0000-0000-0000-000000000001', stagingDb)
      .replace('"00000000000000000000000000000001"', `"${stagingKv}"`);
    const shared = path.join(dir, 'shared.toml');
    const own = path.join(dir, 'own.toml');
    writeFileSync(shared, withIds(productionDb, productionKv));
    writeFileSync(own, withIds('0b6e7d2c-51a4-4f39-8e2d-7c1a9b3f6e05', '3c8d1e6f9a2b4c7d0e5f8a1b4c7d2e9f'));

    const staging = await run('--config', shared, 'staging');
    expect(staging.status).toBe(1);
    expect(staging.stderr).toContain(`d1_databases DB: database_id "${productionDb}" is also [env.production]'s`);
    expect(staging.stderr).toContain(`kv_namespaces CACHE: id "${productionKv}" is also [env.production]'s`);
    expect(staging.stderr).toContain('refused: staging cannot be deployed until these ids are set');
    // The deploy of production is refused too: staging's deploys would write its data.
    expect((await run('--config', shared, 'production')).status).toBe(1);

    const separate = await run('--config', own, 'staging', 'production');
    expect(separate.status, separate.stderr).toBe(0);
    expect(separate.stdout).toContain('deploy check staging: ids set (D1 and KV)');
  });
});
