// A real HTTP upstream for tests and benchmarks, able to delay, fail, hang and drop
// connections on command. It speaks both upstream protocols the gateway calls:
//   POST /agent                  agent-http: {executionId, agentId, intent, input, context, history}
//   POST /v1/chat/completions    OpenAI chat completions (non-streaming)
// Faults come from `input.mock` (agent-http) or a `mock:{...}` JSON suffix in the last chat
// message: {delayMs, hang, reset, failTimes, failStatus, errorRate, status, retryAfter (a
// Retry-After header, in seconds, on the failures and `status` answers), location (sent with
// `status`: a redirect; also on GET /models, as are `failStatus` and `delayMs`), statusBytes (a
// `status` answer padded to about that many bytes), modelsStatus (GET /models answers it, a chat
// as usual: a server without a model listing), getChatStatus (see below), body, contentType (of `body`), stallBody
// (headers, then silence; with `stallStatus` that status, not 200; with echoAuthorization, its
// error cut inside the credential), cutBody (a 200's headers and the start of its body, then a dropped
// connection), contextPatch, chunkDelayMs, cutAfter, resetRate, spikeRate, spikeMs,
// outputBytes (a string output of that many bytes; to a chat completions request too: JSON of
// another shape, and large), chunkedOutputBytes (the same without a Content-Length), gzipOutputBytes (the same gzipped, its
// Content-Length the compressed size), completionBytes (a chat completion whose content is that many
// bytes), answerBytes (an output {answer} of about
// that many bytes of JSON, its answer JSON text, which escaping makes larger in a task; with
// `a2a: {state: a2aState}` when `a2aState` is set), ignoreStreamOptions, pieceBytes,
// echoStreamOptions and pingBytes (of a stream: see streamChat), echoEscaped (the credential that
// echoAuthorization and echoAuthorizationInStream name spelt with JSON escapes: see escapedSpelling), rejectStreamOptions (a chat with
// stream_options is answered 400), omitUsage (a chat answer without its `usage`, as some
// OpenAI-compatible servers send), holdOpen (a stream, or a `body` (in `pieceBytes` pieces too; each `@PAD@` in it `pad` x's), is written whole and its
// connection then held open until the client closes it, as a keep-alive server may)}. `failTimes` counts attempts per Idempotency-Key, so a
// retried call can succeed. The chaos faults are independent chances per request: `errorRate`
// (503, or a dropped connection with `reset`), `resetRate` (a dropped connection), `spikeRate`
// (a delay of up to `spikeMs`). `contextPatch` in a query string is JSON.
// GET /requests?key=K lists what arrived with that Idempotency-Key (`target:<name>` for a target
// with the fault `record`), each with `aborted` once the client closed before the end; GET /counts counts
// requests per `?target=` name. Faults may also sit in a target URL's query string.
// GET /gauge?name=G says how many requests carrying `gauge=G` are open now and the most that
// were at once (`{open, peak}`): how many connections a client holds in parallel.
// It is also a DNS-over-HTTPS resolver (JSON API) for the outbound guard's tests:
//   GET /dns-query?name=N&type=A|AAAA   answers what POST /dns?name=N set; unknown: NXDOMAIN
//   POST /dns?name=N  {A?, AAAA?, ttl?, status?, httpStatus?}   sets (or replaces) N's answers
import http from 'node:http';
import { gzipSync } from 'node:zlib';

/**
 * `keepBodies: false` records only each request's metadata (long runs: the chaos suite).
 * Every recorded request gets its `outcome` once answered: the status sent, or 'reset'.
 * @param {{ port?: number, host?: string, keepBodies?: boolean }} [options]
 * @returns {Promise<{ url: string, close: () => Promise<void>, requests: Map<string, object[]> }>}
 */
export async function startMockUpstream(options = {}) {
  /** @type {Map<string, object[]>} */
  const requests = new Map();
  /** Requests per `?target=` name. @type {Map<string, number>} */
  const counts = new Map();
  /** Targets stopped through /control. @type {Set<string>} */
  const down = new Set();
  const sockets = new Set();
  /** Numbers every request (`<port>.<n>`), so a reply names the call that produced it (`output.call`). */
  let calls = 0;
  /** DNS answers per name. @type {Map<string, {A?: string[], AAAA?: string[], ttl?: number, status?: number, httpStatus?: number}>} */
  const dns = new Map();
  /** Requests open at once per `gauge` name, and the most there were. @type {Map<string, {open: number, peak: number}>} */
  const gauges = new Map();

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://mock');
    // `/t/<target>/<faults>/…`: a target's name and faults in the path, for base URLs that
    // get a path appended (`<baseUrl>/chat/completions`). Faults: `ok` or `k=v,k=v`.
    const prefixed = /^\/t\/([^/]+)\/([^/]+)(\/.*)$/.exec(url.pathname);
    if (prefixed) {
      url.searchParams.set('target', decodeURIComponent(prefixed[1]));
      if (prefixed[2] !== 'ok') for (const pair of decodeURIComponent(prefixed[2]).split(',')) url.searchParams.set(...pair.split('='));
      url.pathname = prefixed[3];
    }
    if (req.method === 'GET' && url.pathname === '/requests') {
      const key = url.searchParams.get('key') ?? '';
      return send(res, 200, { key, count: requests.get(key)?.length ?? 0, requests: requests.get(key) ?? [] });
    }
    if (req.method === 'GET' && url.pathname === '/dns-query') return answerDns(res, url, dns);
    if (req.method === 'POST' && url.pathname === '/dns') {
      const name = (url.searchParams.get('name') ?? '').toLowerCase();
      dns.set(name, JSON.parse((await readBody(req)) || '{}'));
      return send(res, 200, { name, ...dns.get(name) });
    }
    if (req.method === 'GET' && url.pathname === '/counts') return send(res, 200, Object.fromEntries(counts));
    if (req.method === 'GET' && url.pathname === '/gauge') return send(res, 200, gauges.get(url.searchParams.get('name') ?? '') ?? { open: 0, peak: 0 });
    const gaugeName = url.searchParams.get('gauge');
    if (gaugeName) {
      const gauge = gauges.get(gaugeName) ?? { open: 0, peak: 0 };
      gauges.set(gaugeName, gauge);
      gauge.peak = Math.max(gauge.peak, ++gauge.open);
      res.on('close', () => gauge.open--);
    }
    // POST /control?target=T&down=true|false: a stopped target drops every connection.
    if (req.method === 'POST' && url.pathname === '/control') {
      const name = url.searchParams.get('target') ?? '';
      if (url.searchParams.get('down') === 'true') down.add(name);
      else down.delete(name);
      return send(res, 200, { down: [...down] });
    }
    if (url.searchParams.has('target') && down.has(url.searchParams.get('target'))) return req.socket.destroy();
    if (req.method === 'GET' && url.pathname.endsWith('/models')) {
      if (url.searchParams.has('delayMs')) await sleep(Math.min(Number(url.searchParams.get('delayMs')), 120_000));
      const failStatus = url.searchParams.get('modelsStatus') ?? url.searchParams.get('failStatus') ?? url.searchParams.get('status');
      const location = url.searchParams.get('location');
      return failStatus ? send(res, Number(failStatus), { error: 'injected' }, location ? { location } : {}) : send(res, 200, { object: 'list', data: [{ id: 'mock-model', object: 'model' }] });
    }
    if (req.method === 'GET' && url.pathname === '/health') return send(res, 200, { ok: true });
    // `getChatStatus`: a GET of the chat route answers that status (a FastAPI server, as vLLM and
    // LiteLLM are, answers 405 to a method its POST-only route does not take); else 404.
    if (req.method === 'GET' && url.pathname.endsWith('/chat/completions') && url.searchParams.has('getChatStatus')) return send(res, Number(url.searchParams.get('getChatStatus')), { detail: 'Method Not Allowed' });
    if (req.method !== 'POST') {
      const failStatus = url.searchParams.get('failStatus');
      return failStatus ? send(res, Number(failStatus), { error: 'injected' }) : send(res, 404, { error: 'not found' });
    }

    let body;
    let raw;
    try {
      raw = await readBody(req);
    } catch {
      return; // the client went away mid-request (a timeout or a crash): nothing to answer
    }
    try {
      body = JSON.parse(raw);
    } catch {
      return send(res, 400, { error: 'body is not JSON' });
    }
    // Requests are recorded by Idempotency-Key (upstream calls), webhook-id (webhooks),
    // X-A2A-Notification-Token (A2A push notifications), or as `target:<name>` for a target
    // that asks for it with the fault `record` (pool chats carry none of those headers).
    const recorded = url.searchParams.has('record') && url.searchParams.has('target') ? `target:${url.searchParams.get('target')}` : '';
    const key = String(req.headers['idempotency-key'] ?? req.headers['webhook-id'] ?? req.headers['x-a2a-notification-token'] ?? recorded);
    const seen = requests.get(key) ?? [];
    const entry = options.keepBodies === false
      ? { path: url.pathname, at: Date.now(), aborted: false, outcome: null }
      : { path: url.pathname, body, raw, headers: req.headers, at: Date.now(), aborted: false, outcome: null };
    entry.call = `${port}.${++calls}`;
    res.on('finish', () => { entry.outcome = res.statusCode; entry.answeredAt = Date.now(); });
    // A client that gives up (timeout, cancel) closes the connection before the answer.
    res.on('close', () => { if (!res.writableEnded) entry.aborted = true; });
    seen.push(entry);
    if (key) requests.set(key, seen);
    const attempt = seen.length;

    const target = url.searchParams.get('target');
    if (target) counts.set(target, (counts.get(target) ?? 0) + 1);
    const isChat = url.pathname.endsWith('/chat/completions');
    // Faults set per target in the URL's query, or per request in the body.
    const mock = { ...queryMock(url.searchParams), ...(isChat ? chatMock(body) : (body?.input?.mock ?? {})) };

    if (mock.delayMs) await sleep(Math.min(Number(mock.delayMs), 120_000));
    if (mock.spikeRate !== undefined && Math.random() < Number(mock.spikeRate)) entry.spiked = true;
    if (entry.spiked) await sleep(Math.random() * Math.min(Number(mock.spikeMs ?? 1_000), 120_000));
    if (mock.hang) return; // never answers; the client's timeout or abort ends it
    if (mock.resetRate !== undefined && Math.random() < Number(mock.resetRate)) {
      entry.outcome = 'reset';
      return req.socket.destroy();
    }
    // failTimes: the first N attempts fail; errorRate: each request fails with that chance.
    const failing = mock.errorRate !== undefined ? Math.random() < Number(mock.errorRate)
      : mock.failTimes === undefined ? Boolean(mock.failStatus || mock.reset) : attempt <= Number(mock.failTimes);
    if (failing && mock.reset) {
      entry.outcome = 'reset';
      return req.socket.destroy();
    }
    const retryAfter = mock.retryAfter === undefined ? {} : { 'retry-after': String(mock.retryAfter) };
    if (failing) return send(res, Number(mock.failStatus ?? 503), { error: `injected failure on attempt ${attempt}` }, retryAfter);
    // As a server or proxy that names the credential it refused, whole, in its error.
    if (mock.echoAuthorization) {
      const token = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
      if (mock.stallBody) {
        // Its error cut in the middle of the credential, then nothing until the client goes.
        res.writeHead(Number(mock.status ?? 401), { 'content-type': 'application/json' });
        return res.write(`{"error":{"message":"Incorrect API key provided: ${(mock.echoEscaped ? escapedSpelling(token) : token).slice(0, -3)}`);
      }
      if (mock.echoEscaped) {
        res.writeHead(Number(mock.status ?? 401), { 'content-type': 'application/json' });
        return res.end(`{"error":{"message":"Incorrect API key provided: ${escapedSpelling(token)}","type":"invalid_request_error"}}`);
      }
      return send(res, Number(mock.status ?? 401), { error: { message: `Incorrect API key provided: ${token}`, type: 'invalid_request_error' } });
    }
    if (mock.status) return send(res, Number(mock.status), { error: 'injected status', ...(mock.statusBytes && { padding: 'p'.repeat(Number(mock.statusBytes)) }) }, { ...retryAfter, ...(mock.location ? { location: mock.location } : {}) });
    if (mock.body !== undefined) {
      res.writeHead(200, { 'content-type': mock.contentType ?? 'application/json' });
      // `pieceBytes`: in pieces a millisecond apart, as for a stream.
      // `pad: n`: each `@PAD@` in it is n x's (a long event, which a URL could not hold).
      const bytes = Buffer.from(String(mock.body).replaceAll('@PAD@', 'x'.repeat(Number(mock.pad ?? 0))));
      for (let at = 0, size = Number(mock.pieceBytes) || bytes.length; at < bytes.length; at += size) {
        res.write(bytes.subarray(at, at + size));
        if (at + size < bytes.length) await sleep(1);
      }
      return mock.holdOpen ? undefined : res.end();
    }
    if (mock.cutBody) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"output":');
      await sleep(30); // let the headers and the first bytes reach the client first
      entry.outcome = 'cut';
      return res.socket?.destroy();
    }
    if (mock.stallBody) {
      // `stallStatus`: an error whose body stalls the same way (a first part, then nothing).
      res.writeHead(Number(mock.stallStatus ?? 200), { 'content-type': 'application/json' });
      return res.write('{"id":'); // headers and a first byte, then nothing until the client goes
    }
    if (mock.outputBytes) return send(res, 200, { output: 'o'.repeat(Number(mock.outputBytes)) });
    if (mock.chunkedOutputBytes) {
      // The same reply without a Content-Length: its size shows only as it is read.
      res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
      res.write('{"output":"');
      for (let left = Number(mock.chunkedOutputBytes); left > 0; left -= 65_536) res.write('o'.repeat(Math.min(left, 65_536)));
      return res.end('"}');
    }
    if (mock.gzipOutputBytes) {
      // The same reply gzipped: its Content-Length is the compressed size, a sliver of what it decodes to.
      const zipped = gzipSync(JSON.stringify({ output: 'o'.repeat(Number(mock.gzipOutputBytes)) }));
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': zipped.length });
      return res.end(zipped);
    }
    // As servers that predate stream_options do (older Azure API versions).
    if (isChat && mock.rejectStreamOptions && body?.stream_options !== undefined) return send(res, 400, { error: { message: 'Unrecognized request argument supplied: stream_options', type: 'invalid_request_error' } });
    if (isChat && body?.stream) return streamChat(res, body, mock, attempt, String(req.headers.authorization ?? '').replace(/^Bearer /, ''));
    if (isChat) {
      const last = body?.messages?.at(-1)?.content ?? '';
      return send(res, 200, {
        id: `chatcmpl-${attempt}`,
        object: 'chat.completion',
        created: Math.floor(Date.now() / 1000),
        model: body?.model ?? 'mock',
        choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: mock.completionBytes ? 'o'.repeat(Number(mock.completionBytes)) : `mock reply to: ${String(last).split('\nmock:')[0]}` } }],
        // Like a model, never more completion tokens than asked for.
        ...(!mock.omitUsage && { usage: usageFor(body) }),
      });
    }
    if (mock.answerBytes) {
      // '{"k":"v"},' is 10 characters, 14 bytes in JSON; the call's number tells answers apart.
      const answer = `${entry.call}:${'{"k":"v"},'.repeat(Math.floor(Number(mock.answerBytes) / 14))}`;
      return send(res, 200, { output: { answer, ...(mock.a2aState ? { a2a: { state: mock.a2aState } } : {}) } });
    }
    return send(res, 200, {
      output: { echo: body?.input ?? null, intent: body?.intent, attempt, historyLength: body?.history?.length ?? 0, call: entry.call },
      ...(mock.contextPatch ? { contextPatch: mock.contextPatch } : {}),
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.keepAliveTimeout = 5_000;

  await new Promise((resolve) => server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve(undefined)));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

// Streams the reply as chat.completion.chunk events, one word each, `chunkDelayMs` apart;
// `cutAfter: n` drops the connection after n chunks (no [DONE]), like a crashed upstream.
// Asked for `stream_options.include_usage`, it sends OpenAI's usage chunk, unless
// `ignoreStreamOptions` (as some OpenAI-compatible servers do). `pieceBytes: n` writes the
// whole stream in n-byte pieces a millisecond apart, so events arrive split across network
// chunks. `echoStreamOptions` ends the reply with the request's stream_options as JSON.
// `echoAuthorizationInStream` sends, after the first word, an error event naming the request's
// credential whole (as a proxy that refuses it mid-stream may) and ends without [DONE]; with
// `echoBase64`, in base64 instead: a Basic credential (`user:<key>`) and the key alone, URL-safe.
// `pingBytes: n` sends about n bytes of `: ping` keep-alive comments before the first event.
async function streamChat(res, body, mock, attempt, token) {
  const last = String(body?.messages?.at(-1)?.content ?? '').split('\nmock:')[0];
  const echo = mock.echoStreamOptions ? ` stream_options=${JSON.stringify(body?.stream_options ?? null)}` : '';
  const words = `mock reply to: ${last}${echo}`.split(' ');
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const base = { id: `chatcmpl-stream-${attempt}`, object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000), model: body?.model ?? 'mock' };
  const asked = body?.stream_options?.include_usage === true && !mock.ignoreStreamOptions;
  let held = '';
  const write = (text) => (mock.pieceBytes ? (held += text) : res.write(text));
  // As OpenAI does when asked: `usage: null` on every chunk but the usage chunk.
  const send = (payload) => write(`data: ${JSON.stringify(asked && !('usage' in payload) ? { ...payload, usage: null } : payload)}\n\n`);
  if (mock.pingBytes) write(': ping\n\n'.repeat(Math.ceil(Number(mock.pingBytes) / 8)));
  send({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
  for (let i = 0; i < words.length; i++) {
    if (mock.cutAfter !== undefined && i >= Number(mock.cutAfter)) {
      await sleep(30); // let what was written reach the client first
      return res.socket?.destroy();
    }
    if (mock.chunkDelayMs) await sleep(Number(mock.chunkDelayMs));
    send({ ...base, choices: [{ index: 0, delta: { content: (i ? ' ' : '') + words[i] }, finish_reason: null }] });
    if (mock.echoAuthorizationInStream) {
      if (mock.echoBase64) write(`data: ${JSON.stringify({ error: { message: `Invalid credentials: Basic ${Buffer.from(`user:${token}`).toString('base64')}; token ${Buffer.from(token).toString('base64url')}`, type: 'server_error' } })}\n\n`);
      else if (mock.echoEscaped) write(`data: {"error":{"message":"Incorrect API key provided: ${escapedSpelling(token)}; again: ${escapedSpelling(token, 1)}","type":"invalid_request_error"}}\n\n`);
      else write(`data: ${JSON.stringify({ error: { message: `Incorrect API key provided: ${token}; again: ${token}`, type: 'invalid_request_error' } })}\n\n`);
      break;
    }
  }
  if (!mock.echoAuthorizationInStream) {
    send({ ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
    // As OpenAI does when asked: one more chunk, with no choices, carrying the usage.
    if (asked) send({ ...base, choices: [], usage: usageFor(body) });
    write('data: [DONE]\n\n');
  }
  const bytes = Buffer.from(held);
  for (let at = 0, size = Number(mock.pieceBytes) || bytes.length; at < bytes.length; at += size) {
    res.write(bytes.subarray(at, at + size));
    await sleep(1);
  }
  if (!mock.holdOpen) res.end();
}

/**
 * `token` as a JSON encoder that escapes more than it must may spell it (`echoEscaped`): every
 * other character (from `from`) as `\uXXXX` with hex of mixed case, and '/' as `\/`. Parsed,
 * it is the token itself.
 */
function escapedSpelling(token, from = 0) {
  return [...token].map((char, i) => {
    if (char === '/') return '\\/';
    if ((i + from) % 2) return char;
    const hex = char.charCodeAt(0).toString(16).padStart(4, '0');
    return `\\u${[...hex].map((digit, j) => (j % 2 ? digit.toUpperCase() : digit)).join('')}`;
  }).join('');
}

// The JSON form of DNS over HTTPS (as cloudflare-dns.com and dns.google answer it).
function answerDns(res, url, dns) {
  const name = (url.searchParams.get('name') ?? '').toLowerCase().replace(/\.$/, '');
  const type = url.searchParams.get('type') ?? 'A';
  const entry = dns.get(name);
  if (entry?.httpStatus) return send(res, entry.httpStatus, { error: 'injected resolver failure' });
  const code = type === 'AAAA' ? 28 : 1;
  const status = entry ? (entry.status ?? 0) : 3;
  const answers = (entry?.[type === 'AAAA' ? 'AAAA' : 'A'] ?? []).map((data) => ({ name: `${name}.`, type: code, TTL: entry?.ttl ?? 0, data }));
  res.writeHead(200, { 'content-type': 'application/dns-json' });
  res.end(JSON.stringify({ Status: status, Question: [{ name: `${name}.`, type: code }], ...(answers.length && { Answer: answers }) }));
}

/** 10 prompt tokens and 5 completion tokens, fewer when `max_tokens` asks for fewer. */
function usageFor(body) {
  const completion = Math.min(5, Number(body?.max_completion_tokens ?? body?.max_tokens ?? 5));
  return { prompt_tokens: 10, completion_tokens: completion, total_tokens: 10 + completion };
}

function queryMock(params) {
  const mock = {};
  for (const name of ['delayMs', 'failTimes', 'failStatus', 'status', 'retryAfter', 'chunkDelayMs', 'cutAfter', 'errorRate', 'resetRate', 'spikeRate', 'spikeMs', 'outputBytes', 'chunkedOutputBytes', 'gzipOutputBytes', 'answerBytes', 'completionBytes', 'pieceBytes', 'statusBytes', 'stallStatus', 'pad', 'pingBytes']) if (params.has(name)) mock[name] = Number(params.get(name));
  for (const name of ['hang', 'reset', 'stallBody', 'cutBody', 'ignoreStreamOptions', 'echoStreamOptions', 'rejectStreamOptions', 'omitUsage', 'holdOpen', 'echoAuthorization', 'echoAuthorizationInStream', 'echoEscaped', 'echoBase64']) if (params.has(name)) mock[name] = params.get(name) !== 'false';
  for (const name of ['body', 'contentType', 'location', 'a2aState']) if (params.has(name)) mock[name] = params.get(name);
  if (params.has('contextPatch')) mock.contextPatch = JSON.parse(params.get('contextPatch'));
  return mock;
}

function chatMock(body) {
  const content = String(body?.messages?.at(-1)?.content ?? '');
  const index = content.indexOf('\nmock:');
  if (index < 0) return {};
  try {
    return JSON.parse(content.slice(index + 6));
  } catch {
    return {};
  }
}

function send(res, status, payload, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(payload));
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// `node test/support/mock-upstream.mjs [port]` serves it standalone (benchmarks, manual tests).
if (import.meta.url === `file://${process.argv[1]}`) {
  const upstream = await startMockUpstream({ port: Number(process.argv[2] ?? 8788) });
  console.log(`mock upstream on ${upstream.url}`);
}
