// How many Durable Objects the local runtime keeps resident, and for how long: `npm run
// bench:residency`. Two facts the scale scenarios depend on (docs/BENCHMARKS.md, seventh and
// eighth passes):
//
// 1. Eviction: objects are touched once, then the workerd process's open files are watched
//    until they drop (a resident SQLite-backed object holds its database, WAL and shared-memory
//    files open); a second touch counts how many constructors ran again, and workerd's CPU for
//    that touch (cold: every object starts again) is set against a third one straight after
//    (warm). The objects are agent-shaped (--tables), so the difference is what a cold start
//    costs the runtime for such an object, before any gateway code.
// 2. Ceiling: objects are touched in batches, all within seconds (none idle long enough to be
//    evicted), until a touch fails. This runs twice, each in a fresh process: with objects of one
//    table and one row, and with objects of --tables tables, each with an index and a row (about
//    the shape of an agent). Every object holds the same three open files, so if the ceiling
//    falls with the schema while the process's resident memory at the ceiling stays put, memory
//    bounds it, not open files (the seventh pass blamed open files; the eighth measured this).
//
// Then the consequence for a rotation over N agents: an object touched within the eviction
// window stays resident, so R requests a second keep min(N, R × window) objects resident, and
// beyond the ceiling R cannot go without failures, whatever the gateway does per request.
// A batch that outlasts the eviction window would let earlier objects go and overstate the
// ceiling, so the open files are checked against three per object touched.
//
// Linux only (it reads /proc). Bounded: at most --objects per ceiling, two minutes of watching.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { cliArgs } from '../scripts/lib/cli.mjs';
import { startProbeWorker } from './lib/probe-worker.mjs';

const USAGE = `usage: npm run bench:residency [-- OPTIONS]
  --objects N           objects to start (default 12000)
  --batch N             (default 250)
  --tables N            (default 12)
  --help                this text`;
const { values } = cliArgs('bench:residency', USAGE, {
  options: { objects: { type: 'string', default: '12000' }, batch: { type: 'string', default: '250' }, tables: { type: 'string', default: '12' } },
});
const ceiling = Number(values.objects);
const batch = Number(values.batch);
const tables = Number(values.tables);

const script = `import { DurableObject } from 'cloudflare:workers';
let constructed = 0;
export class Probe extends DurableObject {
  constructor(ctx, env) { super(ctx, env); constructed++; }
  async touch(tables) {
    for (let t = 0; t < tables; t++) {
      this.ctx.storage.sql.exec('CREATE TABLE IF NOT EXISTS t' + t + ' (k INTEGER PRIMARY KEY, v TEXT, at INTEGER)');
      if (tables > 1) this.ctx.storage.sql.exec('CREATE INDEX IF NOT EXISTS t' + t + '_at ON t' + t + ' (at, k)');
      this.ctx.storage.sql.exec('INSERT INTO t' + t + ' (v, at) VALUES (?, ?)', 'x'.repeat(300), t);
    }
  }
}
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const [prefix, from, to, tables] = [url.searchParams.get('prefix'), Number(url.searchParams.get('from')), Number(url.searchParams.get('to')), Number(url.searchParams.get('tables'))];
    let failed = 0;
    let error = null;
    await Promise.all(Array.from({ length: to - from }, async (_, i) => {
      try {
        await env.PROBE.get(env.PROBE.idFromName(prefix + (from + i))).touch(tables);
      } catch (e) {
        failed++;
        error ??= String(e);
      }
    }));
    return Response.json({ failed, error, constructed });
  },
};
`;

const workerdPids = () => execFileSync('pgrep', ['-x', 'workerd']).toString().trim().split('\n').filter(Boolean);
const openFiles = (pid) => readdirSync(`/proc/${pid}/fd`).length;
// The workerd serving the probe: the one with the most open files once objects exist.
const probePid = () => workerdPids().sort((a, b) => openFiles(b) - openFiles(a))[0];
const limitOf = (pid) => /Max open files\s+(\d+)/.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))?.[1];
const cpuMs = (pid) => {
  // utime and stime, fields 14 and 15 of /proc/PID/stat (after the parenthesised name), in ticks.
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
};
const residentMiB = (pid) => Math.round(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024);
const toucher = (mf) => async (prefix, from, to, schema = 1) => (await mf.dispatchFetch(`http://probe/?prefix=${prefix}&from=${from}&to=${to}&tables=${schema}`)).json();

// 1. Eviction.
let mf = await startProbeWorker(script, 'residency');
let touch = toucher(mf);
const sample = 500;
const before = await touch('idle-', 0, sample, tables);
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
const coldFrom = cpuMs(pid);
const again = await touch('idle-', 0, sample, tables);
const warmFrom = cpuMs(pid);
await touch('idle-', 0, sample, tables);
const [coldUs, warmUs] = [((warmFrom - coldFrom) * 1000) / sample, ((cpuMs(pid) - warmFrom) * 1000) / sample];
console.log(`eviction: ${sample} objects of ${tables} tables touched once held ${resident} open files; ${evictedAfter === null ? 'none were closed within 120 s' : `they were closed after ${evictedAfter.toFixed(0)} s idle (polled each second)`}; touching them again ran ${again.constructed - before.constructed} constructors`);
console.log(`cold start: workerd CPU per touch ${Math.round(coldUs)} µs for the touch that started them again, ${Math.round(warmUs)} µs for the same touch straight after (${(coldUs / Math.max(warmUs, 1)).toFixed(1)}×)`);
await mf.dispose();

// 2. Ceiling, for one-table objects and for agent-shaped ones, each in a fresh process.
const ceilings = [];
for (const schema of [1, tables]) {
  mf = await startProbeWorker(script, 'residency');
  touch = toucher(mf);
  await touch('warm-', 0, 1);
  const probe = probePid();
  const [filesAtStart, memoryAtStart] = [openFiles(probe), residentMiB(probe)];
  let good = 0;
  let at = { files: filesAtStart, memory: memoryAtStart };
  let failure = 'none';
  for (let from = 0; from < ceiling; from += batch) {
    const result = await touch(`many-${schema}-`, from, from + batch, schema);
    if (result.failed > 0) {
      failure = `${result.failed} of objects ${from}–${from + batch} failed (${result.error})`;
      break;
    }
    good = from + batch;
    at = { files: openFiles(probe), memory: residentMiB(probe) };
    if (at.files < filesAtStart + 3 * good * 0.95) {
      failure = `none, but objects were evicted during the run (${at.files} open files for ${good} objects): the ceiling is not measured`;
      break;
    }
  }
  const perObjectKiB = Math.round(((at.memory - memoryAtStart) * 1024) / Math.max(good, 1));
  ceilings.push({ schema, good });
  console.log(`ceiling, objects of ${schema} table${schema === 1 ? '' : 's'}: ${good} resident at once; at the last good batch ${at.files} open files (limit ${limitOf(probe)}) and ${at.memory} MiB resident (${perObjectKiB} KiB per object); then ${failure}`);
  await mf.dispose();
}

const window = evictedAfter ?? 10;
const [small, shaped] = ceilings;
console.log(`consequence: a rotation over more agents than fit keeps R × ${window.toFixed(0)} s of them resident, so it can sustain at most about ${Math.round(shaped.good / window)} requests a second here with agent-shaped objects, and ${Math.round(small.good / window)} even if each agent held one table`);
