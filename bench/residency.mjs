// How many Durable Objects the local runtime keeps resident, and for how long: `npm run
// bench:residency`. Two facts the scale scenarios depend on (docs/BENCHMARKS.md, seventh pass):
//
// 1. Eviction: objects are touched once, then the workerd process's open files are watched
//    until they drop (a resident SQLite-backed object holds its database, WAL and shared-memory
//    files open); a second touch counts how many constructors ran again.
// 2. Ceiling: objects are touched in batches, all within seconds (none idle long enough to be
//    evicted), until a touch fails; the open files at the last good batch, against the process's
//    limit, say what bounds it.
//
// Linux only (it reads /proc). Bounded: at most 12,000 objects, two minutes of watching.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startProbeWorker } from './lib/probe-worker.mjs';

const { values } = parseArgs({ options: { objects: { type: 'string', default: '12000' }, batch: { type: 'string', default: '500' } } });
const ceiling = Number(values.objects);
const batch = Number(values.batch);

const script = `import { DurableObject } from 'cloudflare:workers';
let constructed = 0;
export class Probe extends DurableObject {
  constructor(ctx, env) { super(ctx, env); constructed++; }
  async touch() {
    this.ctx.storage.sql.exec('CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT)');
    this.ctx.storage.sql.exec('INSERT INTO t (v) VALUES (?)', 'x');
  }
}
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const [prefix, from, to] = [url.searchParams.get('prefix'), Number(url.searchParams.get('from')), Number(url.searchParams.get('to'))];
    let failed = 0;
    let error = null;
    await Promise.all(Array.from({ length: to - from }, async (_, i) => {
      try {
        await env.PROBE.get(env.PROBE.idFromName(prefix + (from + i))).touch();
      } catch (e) {
        failed++;
        error ??= String(e);
      }
    }));
    return Response.json({ failed, error, constructed });
  },
};
`;

const mf = await startProbeWorker(script, 'residency');
const touch = async (prefix, from, to) => (await mf.dispatchFetch(`http://probe/?prefix=${prefix}&from=${from}&to=${to}`)).json();
// The workerd serving the probe: the one with the most open files once objects exist.
const workerdPids = () => execFileSync('pgrep', ['-x', 'workerd']).toString().trim().split('\n').filter(Boolean);
const openFiles = (pid) => readdirSync(`/proc/${pid}/fd`).length;
const probePid = () => workerdPids().sort((a, b) => openFiles(b) - openFiles(a))[0];
const limitOf = (pid) => /Max open files\s+(\d+)/.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))?.[1];

// 1. Eviction.
const sample = 200;
const before = await touch('idle-', 0, sample);
const pid = probePid();
const resident = openFiles(pid);
const started = Date.now();
let evictedAfter = null;
while (Date.now() - started < 120_000) {
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  if (openFiles(pid) < resident - sample) {
    evictedAfter = (Date.now() - started) / 1000;
    break;
  }
}
const again = await touch('idle-', 0, sample);
console.log(`eviction: ${sample} objects touched once held ${resident} open files; ${evictedAfter === null ? 'none were closed within 120 s' : `they were closed after ${evictedAfter.toFixed(0)} s idle (polled each second)`}; touching them again ran ${again.constructed - before.constructed} constructors`);

// 2. Ceiling.
const filesAtStart = openFiles(pid);
let good = 0;
let filesAtGood = filesAtStart;
for (let from = 0; from < ceiling; from += batch) {
  const result = await touch('many-', from, from + batch);
  if (result.failed > 0) {
    console.log(`ceiling: ${result.failed} of objects ${from}–${from + batch} failed (${result.error})`);
    break;
  }
  good = from + batch;
  filesAtGood = openFiles(pid);
}
console.log(`ceiling: ${good} objects resident at once, ${filesAtGood} open files (${((filesAtGood - filesAtStart) / Math.max(good, 1)).toFixed(1)} per object); the process's open-files limit is ${limitOf(pid)}`);
await mf.dispose();
