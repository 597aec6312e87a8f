// A throwaway Worker with one SQLite-backed Durable Object class (`PROBE`, class `Probe`), for
// the bench tools that measure the runtime itself rather than the gateway.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * Serves `script` (an ES module exporting `Probe` and a default fetch handler) with Miniflare.
 * Its storage lives in a directory of its own (tmpfs when there is one), removed on exit.
 */
export async function startProbeWorker(script, name) {
  const runDir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), `eag-${name}-`));
  process.env.TMPDIR = runDir; // before Miniflare exists: it keeps its storage under os.tmpdir()
  process.on('exit', () => rmSync(runDir, { recursive: true, force: true }));
  const { Miniflare } = await import('miniflare');
  // The gateway's compatibility date and flags: a flag can change what a primitive costs.
  const { wranglerCompat } = await import('../../scripts/lib/runtime.mjs');
  writeFileSync(path.join(runDir, 'probe.js'), script);
  const mf = new Miniflare({ modules: true, scriptPath: path.join(runDir, 'probe.js'), modulesRoot: runDir, ...wranglerCompat(), durableObjects: { PROBE: { className: 'Probe', useSQLite: true } } });
  await mf.ready;
  return mf;
}
