#!/usr/bin/env node
// `npm run deploy:check`: bundles the Worker exactly as `wrangler deploy` would (dry run, for
// every environment in wrangler.toml) and fails on a bundle error or a bundle over the Workers
// size limit. The limit is the free plan's 3 MiB compressed, so the gateway deploys anywhere.
// Bindings are not inherited by wrangler environments, so it also fails when an environment
// lacks a binding the top level declares (the Worker would throw on first use there). And it
// fails when an environment's static assets lack the API reference page's script (GET /docs
// loads it from this origin), or hold another file than its notice names.
// It also reports each environment whose D1 or KV ids are still the shipped placeholders
// (scripts/deploy-ids.mjs): a warning for the repository as shipped, which CI checks, and a
// failure for the environments named with `--env NAME` (repeatable), the ones about to be deployed.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { checkIds } from './deploy-ids.mjs';
import { SCALAR_ASSET, vendoredProblem } from './vendor-scalar.mjs';

const LIMIT_KIB = 3 * 1024;
const args = process.argv.slice(2);
const named = args.flatMap((arg, i) => (args[i - 1] === '--env' ? [arg] : arg.startsWith('--env=') ? [arg.slice(6)] : []));
if (args.some((arg, i) => arg !== '--env' && args[i - 1] !== '--env' && !arg.startsWith('--env=')) || args.at(-1) === '--env') {
  console.error('usage: npm run deploy:check [-- --env NAME …]   (without --env: every environment, placeholder ids only a warning)');
  process.exit(2);
}
// The top level is bundled first in any case: it is the reference for the bindings check.
const environments = named.length ? [null, ...named] : [null, 'staging', 'production'];
let failed = false;
let expectedBindings = null;
const bindingsOf = (output) => new Set([...output.matchAll(/^env\.([A-Z0-9_]+) /gm)].map((m) => m[1]));

/** Why the assets wrangler read for this deploy lack the vendored Scalar bundle, or null. */
function vendoredScriptProblem(output) {
  const directory = /Read \d+ files? from the assets directory (.+)$/m.exec(output)?.[1]?.trim();
  if (!directory) return 'wrangler read no assets directory';
  return vendoredProblem(directory);
}

for (const environment of environments) {
  const args = ['deploy', '--dry-run', '--outdir', `dist/${environment ?? 'default'}`, ...(environment ? ['--env', environment] : [])];
  const run = spawnSync('node_modules/.bin/wrangler', args, { encoding: 'utf8', env: { ...process.env, WRANGLER_SEND_METRICS: 'false' } });
  const output = `${run.stdout}\n${run.stderr}`;
  const size = /Total Upload: ([\d.]+) KiB \/ gzip: ([\d.]+) KiB/.exec(output);
  const label = environment ?? '(default)';
  if (run.status !== 0 || !size) {
    console.error(`deploy check ${label}: bundling failed\n${output}`);
    failed = true;
    continue;
  }
  const gzip = Number(size[2]);
  const ok = gzip <= LIMIT_KIB;
  const assetProblem = vendoredScriptProblem(output);
  console.log(`deploy check ${label}: ${size[1]} KiB, ${gzip} KiB gzip (limit ${LIMIT_KIB} KiB) ${ok ? 'ok' : 'TOO LARGE'}; assets ${assetProblem ? 'LACK' : 'have'} ${SCALAR_ASSET}`);
  if (!ok) failed = true;
  if (assetProblem) {
    console.error(`deploy check ${label}: the API reference script is not in the assets: ${assetProblem}`);
    failed = true;
  }
  const bindings = bindingsOf(output);
  expectedBindings ??= bindings;
  const missing = [...expectedBindings].filter((name) => !bindings.has(name));
  if (missing.length) {
    console.error(`deploy check ${label}: missing bindings ${missing.join(', ')}`);
    failed = true;
  }
}

const config = path.resolve('wrangler.toml');
if (named.length) {
  if (await checkIds(config, named)) failed = true;
} else {
  // The top level is local development's (placeholders by design); deploys name an environment.
  console.log(`deploy check (default): local development's bindings; deploy with --env (npm run deploy, npm run deploy:staging)`);
  await checkIds(config, ['staging', 'production'], { warn: true });
}
process.exit(failed ? 1 : 0);
