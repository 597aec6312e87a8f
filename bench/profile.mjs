// CPU profiles of the gateway's isolate (the Worker and its Durable Objects run in one), taken
// through workerd's inspector (Miniflare's `inspectorPort`) with the DevTools protocol.
import WebSocket from 'ws';

/** Starts the sampling profiler on the first inspector target; `stop()` returns the profile. */
export async function startProfile(inspectorPort, title = 'core:user:gateway') {
  const targets = await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json();
  const target = targets.find((t) => t.webSocketDebuggerUrl && t.title.includes(title)) ?? targets.find((t) => t.webSocketDebuggerUrl);
  if (!target) throw new Error('no inspector target');
  const socket = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => { socket.once('open', resolve); socket.once('error', reject); });
  let nextId = 1;
  const pending = new Map();
  socket.on('message', (data) => {
    const message = JSON.parse(String(data));
    if (message.id && pending.has(message.id)) {
      pending.get(message.id)(message);
      pending.delete(message.id);
    }
  });
  const send = (method, params = {}) =>
    new Promise((resolve) => {
      const id = nextId++;
      pending.set(id, resolve);
      socket.send(JSON.stringify({ id, method, params }));
    });
  await send('Profiler.enable');
  await send('Profiler.setSamplingInterval', { interval: 200 });
  await send('Profiler.start');
  return {
    async stop() {
      const { result } = await send('Profiler.stop');
      socket.close();
      return result.profile;
    },
  };
}

/**
 * Self time per function (name, file, line), as shares of all samples, highest first; idle,
 * program and GC are listed under their own names.
 */
export function summarise(profile, top = 25) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const counts = new Map();
  for (const id of profile.samples) counts.set(id, (counts.get(id) ?? 0) + 1);
  const self = new Map();
  for (const [id, n] of counts) {
    const { functionName, url, lineNumber } = byId.get(id).callFrame;
    const file = url ? url.split('/').pop() : '';
    const key = `${functionName || '(anonymous)'} ${file}${file ? `:${lineNumber + 1}` : ''}`;
    self.set(key, (self.get(key) ?? 0) + n);
  }
  const total = profile.samples.length;
  return [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([fn, n]) => `${((n / total) * 100).toFixed(1).padStart(5)} %  ${fn}`)
    .join('\n');
}
