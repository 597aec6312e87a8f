import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const root = path.resolve(import.meta.dirname, '../..');

export interface DevServer {
  base: string;
  /** The demo tenant's API key that `npm run dev` printed (from .dev.vars). */
  key: string;
  /** What `npm run dev` printed up to its banner, the banner included. */
  banner: string;
  stop(): void;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/**
 * Starts `npm run dev` (scripts/dev.mjs) as a new user would, on a free port with a fresh state
 * directory (or `state`), and resolves once it has printed the demo key. `vars` are set for this
 * run only (`--var`), over .dev.vars.
 */
export async function startDevServer(statePrefix: string, vars: Record<string, string> = {}, state?: string): Promise<DevServer> {
  const port = await freePort();
  // `state`: a state directory made beforehand (removed on stop like a fresh one).
  const stateDir = state ?? mkdtempSync(path.join(tmpdir(), statePrefix));
  const dev = spawn('node', ['scripts/dev.mjs', '--port', String(port), '--persist-to', stateDir, '--quiet', ...Object.entries(vars).flatMap(([name, value]) => ['--var', `${name}:${value}`])], {
    cwd: root,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false' },
  });
  const stop = () => {
    if (dev.pid) {
      try { process.kill(-dev.pid, 'SIGTERM'); } catch { /* already gone */ }
    }
    rmSync(stateDir, { recursive: true, force: true });
  };
  let output = '';
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`dev server did not start:\n${output}`)), 150_000);
      dev.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('demo API key:')) { clearTimeout(timer); resolve(); }
      });
      dev.stderr?.on('data', (chunk: Buffer) => { output += chunk.toString(); });
      dev.on('exit', (code) => { clearTimeout(timer); reject(new Error(`dev server exited with ${code}:\n${output}`)); });
    });
  } catch (error) {
    stop();
    throw error;
  }
  const key = /^DEMO_API_KEY=(.+)$/m.exec(readFileSync(path.join(root, '.dev.vars'), 'utf8'))?.[1] ?? '';
  return { base: `http://127.0.0.1:${port}`, key, banner: output, stop };
}
