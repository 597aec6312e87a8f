// The Workers the bench measures the gateway against, each served as the gateway is (Miniflare
// with direct sockets), and the other ways to serve a Worker whose hello-world ceilings say why.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Miniflare } from 'miniflare';
import { compatibilityDate, freePort, root, waitFor } from '../../scripts/lib/runtime.mjs';

const direct = [{ host: '127.0.0.1', port: 0 }];

/** Serves a bundled Worker with Miniflare and direct sockets; resolves to it and its URL. */
async function serve(name, options) {
  const mf = new Miniflare({ name, modules: true, compatibilityDate, unsafeDirectSockets: direct, ...options });
  await mf.ready;
  return { mf, url: (await mf.unsafeGetDirectURL(name)).toString() };
}

/** The bare fetch-and-return Worker (bench/bare), forwarding to `upstreamUrl`. */
export const serveBareProxy = (scriptPath, upstreamUrl) => serve('bare', { scriptPath, modulesRoot: path.dirname(scriptPath), bindings: { UPSTREAM_URL: upstreamUrl } });

/** The bare durable-execution Worker (bench/bare-object): one SQLite-backed object per agent name. */
export const serveBareObject = (scriptPath) => serve('bare-object', { scriptPath, modulesRoot: path.dirname(scriptPath), durableObjects: { AGENTS: { className: 'BareAgent', useSQLite: true } } });

/**
 * The hello-world ceiling of each way to serve a Worker here (`measure(url, requests)` runs the
 * load): plain `workerd serve` of a generated config, Miniflare through its entry proxy, and
 * Miniflare with direct sockets, the way the gateway is served. `children` collects processes
 * to stop on exit.
 */
export async function helloCeilings(helloScript, measure, children) {
  const hello = [{ method: 'GET', path: '/' }];
  const ceilings = [];
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-workerd-'));
  writeFileSync(path.join(dir, 'hello.js'), readFileSync(helloScript));
  writeFileSync(
    path.join(dir, 'config.capnp'),
    `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .hello) ],
  sockets = [ (name = "http", address = "127.0.0.1:${port}", http = (), service = "main") ],
);
const hello :Workerd.Worker = ( modules = [ (name = "hello.js", esModule = embed "hello.js") ], compatibilityDate = "${compatibilityDate}" );
`,
  );
  const workerdBin = path.join(root, 'node_modules/@cloudflare/workerd-linux-64/bin/workerd');
  const workerd = spawn(workerdBin, ['serve', path.join(dir, 'config.capnp')], { stdio: 'ignore' });
  children.push(workerd);
  await waitFor(`http://127.0.0.1:${port}/`);
  ceilings.push({ server: 'plain `workerd serve` (no Durable Objects, D1 or KV without hand-written config)', ...(await measure(`http://127.0.0.1:${port}`, hello)) });
  workerd.kill();
  rmSync(dir, { recursive: true, force: true });

  const viaEntry = new Miniflare({ modules: true, scriptPath: helloScript, compatibilityDate });
  ceilings.push({ server: 'Miniflare, through its entry proxy', ...(await measure((await viaEntry.ready).toString(), hello)) });
  await viaEntry.dispose();

  const directly = await serve('hello', { scriptPath: helloScript });
  ceilings.push({ server: 'Miniflare with unsafeDirectSockets (chosen)', ...(await measure(directly.url, hello)) });
  await directly.mf.dispose();
  return ceilings;
}
