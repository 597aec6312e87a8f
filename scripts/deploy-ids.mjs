#!/usr/bin/env node
// `node scripts/deploy-ids.mjs [--config FILE] [--warn] ENV…`: whether wrangler.toml names real
// resources for each environment, or still the placeholder ids the repository ships with
// (all zeros but the last digit), or ids another environment of the file has. A deploy with a placeholder id fails at Cloudflare, or worse,
// binds nothing the operator created; `npm run deploy` and `npm run deploy:staging` run this
// first, and it refuses (exit 1) naming each id to set and the command that creates it.
// `--warn` reports the same and exits 0 (what `npm run deploy:check` does for the repository
// as shipped, which CI checks). The config is read by wrangler itself, so an environment sees
// exactly the bindings `wrangler deploy --env ENV` would use (they are not inherited).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

/** The environment wrangler uses without `--env`: the top level, local development's. */
export const TOP_LEVEL = '(default)';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const KV_ID = /^[0-9a-f]{32}$/i;

/** Why `id` cannot be a real resource's id (of the shape `shape` describes), or null. */
function idProblem(id, pattern, shape) {
  if (typeof id !== 'string' || id === '') return 'is not set';
  if (!pattern.test(id)) return `"${id}" is not ${shape}`;
  // The shipped placeholders are zeros with the environment's number last; a real id is random.
  if (/^0*[0-9a-f]?$/i.test(id.replaceAll('-', ''))) return `"${id}" is a placeholder`;
  return null;
}

/**
 * The ids of environment `environment` (null: the top level) that are placeholders or no ids
 * at all, each with the command that creates the resource, read from `configPath`.
 * @param {typeof import('wrangler')} wrangler
 * @returns {{ binding: string, field: string, problem: string, create: string }[]}
 */
export function placeholderIds(wrangler, configPath, environment) {
  const read = (env) => wrangler.unstable_readConfig({ config: configPath, ...(env && { env }) }, { hideWarnings: true });
  const config = read(environment);
  const envFlag = environment ? ` --env ${environment}` : '';
  // Another environment's ids: a copied id would have this environment's deploys, and the
  // migrations applied for it, write that environment's data (README: each has its own).
  const others = environment ? otherEnvironments(configPath, environment).map((name) => ({ name, config: read(name) })) : [];
  const sharedWith = (id, idsOf) => others.find((other) => idsOf(other.config).includes(id))?.name;
  const found = [];
  for (const db of config.d1_databases ?? []) {
    const create = `npx wrangler d1 create ${db.database_name ?? '<database name>'}`;
    const problem = idProblem(db.database_id, UUID, 'a D1 database id (a UUID)');
    const other = problem ? undefined : sharedWith(db.database_id, (c) => (c.d1_databases ?? []).map((d) => d.database_id));
    if (problem || other) found.push({ binding: `d1_databases ${db.binding}`, field: 'database_id', problem: problem ?? `"${db.database_id}" is also [env.${other}]'s`, create });
  }
  for (const kv of config.kv_namespaces ?? []) {
    const create = `npx wrangler kv namespace create ${kv.binding}${envFlag}`;
    const problem = idProblem(kv.id, KV_ID, 'a KV namespace id (32 hex digits)');
    const other = problem ? undefined : sharedWith(kv.id, (c) => (c.kv_namespaces ?? []).map((k) => k.id));
    if (problem || other) found.push({ binding: `kv_namespaces ${kv.binding}`, field: 'id', problem: problem ?? `"${kv.id}" is also [env.${other}]'s`, create });
  }
  return found;
}

/** The environments `configPath` declares (`[env.NAME]` or `[env.NAME.…]`), but `environment`. */
function otherEnvironments(configPath, environment) {
  const text = readFileSync(configPath, 'utf8');
  const names = new Set([...text.matchAll(/^\s*\[+\s*env\.([A-Za-z0-9_-]+)\s*[.\]]/gm)].map((m) => m[1]));
  names.delete(environment);
  return [...names];
}

/** The report for one environment: its placeholder ids, what to set and how to create it. */
export function placeholderReport(label, section, found) {
  const heading = found.some((f) => f.problem.includes(' is also [env.')) ? 'placeholder ids or ids of another environment' : 'placeholder ids';
  const lines = [`deploy check ${label}: NOT DEPLOYABLE YET: wrangler.toml still has ${heading} (set them in ${section}):`];
  for (const f of found) lines.push(`  - ${f.binding}: ${f.field} ${f.problem}; create it with \`${f.create}\` and put its ${f.field} there`);
  return lines.join('\n');
}

/** Checks `environments` (null for the top level); returns the exit code. */
export async function checkIds(configPath, environments, { warn = false } = {}) {
  const wrangler = await import('wrangler');
  let failed = false;
  for (const environment of environments) {
    const label = environment ?? TOP_LEVEL;
    let found;
    try {
      found = placeholderIds(wrangler, configPath, environment);
    } catch (error) {
      console.error(`deploy check ${label}: cannot read ${configPath}: ${error instanceof Error ? error.message : String(error)}`);
      failed = true;
      continue;
    }
    if (found.length === 0) {
      console.log(`deploy check ${label}: ids set (D1 and KV)`);
      continue;
    }
    const report = placeholderReport(label, environment ? `[env.${environment}]` : 'the top level', found);
    if (warn) {
      console.warn(`${report}\n  (a warning here: \`npm run deploy:check -- --env ${label}\` and the deploy scripts refuse)`);
    } else {
      console.error(`${report}\n  refused: ${label} cannot be deployed until these ids are set`);
      failed = true;
    }
  }
  return failed ? 1 : 0;
}

/** The command line (`[--config FILE] [--warn] ENV…`); returns the exit code. */
export async function main(args) {
  let configPath = 'wrangler.toml';
  let warn = false;
  const environments = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--config') configPath = args[++i] ?? '';
    else if (args[i] === '--warn') warn = true;
    else environments.push(args[i]);
  }
  if (environments.length === 0) {
    console.error('usage: node scripts/deploy-ids.mjs [--config FILE] [--warn] ENV…   (an environment of wrangler.toml, e.g. production)');
    return 2;
  }
  return checkIds(path.resolve(configPath), environments, { warn });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) process.exit(await main(process.argv.slice(2)));
