// What the runtime's primitives cost inside a Durable Object on this machine: `node
// bench/primitives.mjs`. One request runs an operation N times in an object (or, for `rpc`,
// calls the object N times from the Worker) and the wall time per operation is printed.
// workerd freezes the clock while code runs, so the time is taken outside, around the request;
// a loop doing nothing is the floor. Figures move with the VM's speed like everything here: they
// say which primitives are cheap (a statement) and which are not (a commit, an RPC).
import { startProbeWorker } from './lib/probe-worker.mjs';
import { cliArgs } from '../scripts/lib/cli.mjs';

// It takes no options: one given (`--help` included) used to be ignored, and the benchmark ran.
cliArgs('bench:primitives', 'usage: npm run bench:primitives   (no options; see docs/BENCHMARKS.md)');

const OPERATIONS = {
  loop: 'x++;',
  'setTimeout + clearTimeout': 'clearTimeout(setTimeout(() => {}, 30_000));',
  'new AbortController': 'x += new AbortController().signal.aborted ? 1 : 0;',
  'AbortSignal.any of two': 'x += AbortSignal.any([outer.signal, new AbortController().signal]).aborted ? 1 : 0;',
  'abort listener add + remove': "{ const f = () => {}; outer.signal.addEventListener('abort', f); outer.signal.removeEventListener('abort', f); }",
  'SQL read (cached statement)': "sql.exec('SELECT v FROM t WHERE rowid = 1').toArray();",
  'SQL insert, no commit': "sql.exec('INSERT INTO t (v) VALUES (?)', 'x'.repeat(200));",
  'transactionSync, empty': 'this.ctx.storage.transactionSync(() => { x++; });',
  'event-loop turn (setTimeout 0)': 'await new Promise((resolve) => setTimeout(resolve, 0));',
  'commit of 1 row in 1 table': "sql.exec('INSERT INTO t (v) VALUES (?)', 'x'.repeat(200)); await new Promise((resolve) => setTimeout(resolve, 0));",
  'commit of 5 rows in 5 tables': "for (let k = 0; k < 5; k++) sql.exec(`INSERT INTO t${k} (v) VALUES (?)`, 'x'.repeat(500)); await new Promise((resolve) => setTimeout(resolve, 0));",
};
const SLOW = new Set(['event-loop turn (setTimeout 0)', 'commit of 1 row in 1 table', 'commit of 5 rows in 5 tables']);

const cases = Object.entries(OPERATIONS).map(([name, body], i) => `    if (op === ${i}) { for (let i = 0; i < n; i++) { ${body} } return x; } // ${name}`).join('\n');
const script = `import { DurableObject } from 'cloudflare:workers';
export class Probe extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.storage.sql.exec('CREATE TABLE IF NOT EXISTS t (v TEXT)');
    for (let k = 0; k < 5; k++) ctx.storage.sql.exec('CREATE TABLE IF NOT EXISTS t' + k + ' (v TEXT)');
    ctx.storage.sql.exec("INSERT INTO t (v) VALUES ('seed')");
  }
  async run(op, n) {
    const sql = this.ctx.storage.sql;
    const outer = new AbortController();
    let x = 0;
${cases}
    return x;
  }
  async nothing() { return 0; }
}
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const stub = env.PROBE.get(env.PROBE.idFromName('probe'));
    const n = Number(url.searchParams.get('n'));
    if (url.searchParams.get('op') === 'rpc') { for (let i = 0; i < n; i++) await stub.nothing(); }
    else await stub.run(Number(url.searchParams.get('op')), n);
    return new Response('ok');
  },
};
`;
const mf = await startProbeWorker(script, 'primitives');
const time = async (op, n) => {
  const started = performance.now();
  await (await mf.dispatchFetch(`http://probe/?op=${op}&n=${n}`)).text();
  return ((performance.now() - started) * 1000) / n;
};
await time(0, 1000); // the object exists and is warm
const names = Object.keys(OPERATIONS);
console.log('| operation (inside a Durable Object) | µs each |\n| --- | ---: |');
for (const [i, name] of names.entries()) {
  const n = SLOW.has(name) ? 2_000 : 20_000;
  await time(i, n / 10); // warm-up: the JIT, the statement cache
  console.log(`| ${name} | ${(await time(i, n)).toFixed(1)} |`);
}
await time('rpc', 200);
console.log(`| RPC from the Worker to the object and back (empty method) | ${(await time('rpc', 2_000)).toFixed(1)} |`);
await mf.dispose();
