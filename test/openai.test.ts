import { env, SELF } from 'cloudflare:test';
import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { putPool } from '../worker/pools/store';
import { api, BASE, eventually, mockUrl, newAgent, newTenant, chatTarget } from './support/api';
import { limitedKey } from './support/limits';


/** The official client, unmodified, pointed at the gateway. */
const client = (key: string) => new OpenAI({ apiKey: key, baseURL: `${BASE}/v1`, fetch: (input: any, init?: any) => SELF.fetch(input, init), maxRetries: 0 });

async function poolFor(key: string, name: string, targets: unknown[], extra: Record<string, unknown> = {}) {
  const res = await api(`/v1/pools/${name}`, { method: 'PUT', key, body: { targets, ...extra } });
  expect(res.status).toBe(201);
}

/** The key's usage once no tokens are reserved any more (its chats settled). */
const settledUsage = (key: string) =>
  eventually(async () => {
    const res = await api('/v1/usage', { key });
    return res.body.budget.reservedTokens === 0 && res.body;
  });

describe('OpenAI-compatible endpoint with the official client', () => {
  it('answers a completion through a pool', async () => {
    const { key } = await newTenant();
    await poolFor(key, 'chat', [chatTarget(`a${Date.now()}`)]);
    const completion = await client(key).chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'hello' }] });
    expect(completion.choices[0]?.message.content).toBe('mock reply to: hello');
    expect(completion.model).toBe('mock-model');
  });

  it("sets the client's APIError type and param from the envelope", async () => {
    const { key } = await newTenant();
    const invalid = await client(key).chat.completions.create({ model: 'chat', messages: [] }).catch((error: unknown) => error);
    expect(invalid).toBeInstanceOf(OpenAI.BadRequestError);
    expect((invalid as InstanceType<typeof OpenAI.BadRequestError>).code).toBe('invalid_request');
    expect((invalid as InstanceType<typeof OpenAI.BadRequestError>).type).toBe('invalid_request_error');
    expect((invalid as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('messages');
    const missing = await client(key).chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }).catch((error: unknown) => error);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    expect((missing as InstanceType<typeof OpenAI.NotFoundError>).type).toBe('not_found_error');
    expect((missing as InstanceType<typeof OpenAI.NotFoundError>).param).toBeNull();
    const refused = await client('eag_not-a-key').models.list().catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((refused as InstanceType<typeof OpenAI.AuthenticationError>).type).toBe('authentication_error');
  });

  it('asks the targets for <pool>/<model>', async () => {
    const { key } = await newTenant();
    await poolFor(key, 'chat', [chatTarget(`m${Date.now()}`)]);
    const completion = await client(key).chat.completions.create({ model: 'chat/other-model', messages: [{ role: 'user', content: 'hi' }] });
    expect(completion.model).toBe('other-model');
  });

  it('streams a completion', async () => {
    const { key } = await newTenant();
    await poolFor(key, 'chat', [chatTarget(`s${Date.now()}`, 'chunkDelayMs=5')]);
    const stream = await client(key).chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'tell me more' }], stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toBe('mock reply to: tell me more');
  });

  it('fails a stream over to the next target when the first fails before the first byte', async () => {
    const { key } = await newTenant();
    const tag = `fo${Date.now()}`;
    await poolFor(key, 'chat', [chatTarget(`${tag}-dead`, 'failStatus=503'), chatTarget(`${tag}-ok`, 'ok', { priority: 1 })]);
    const stream = await client(key).chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'failover please' }], stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toBe('mock reply to: failover please');
    const raw = await api('/v1/chat/completions', { key, body: { model: 'chat', messages: [{ role: 'user', content: 'x' }] } });
    expect(raw.headers.get('x-gateway-upstream')).toBe(`chat/${tag}-ok`);
  });

  it('ends a stream cut by the upstream with an error event the client sees', async () => {
    const { key } = await newTenant();
    await poolFor(key, 'chat', [chatTarget(`cut${Date.now()}`, 'cutAfter=2')]);
    const stream = await client(key).chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'a long answer please' }], stream: true });
    let text = '';
    await expect(async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    }).rejects.toThrow(/ended the stream|broke/);
    expect(text).toBe('mock reply');
  });

  it('ends a stalled stream with an error event after the idle timeout', async () => {
    const { key } = await newTenant();
    await poolFor(key, 'chat', [chatTarget(`idle${Date.now()}`, 'chunkDelayMs=400')], { timeouts: { idleMs: 100 } });
    const res = await SELF.fetch(`${BASE}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'chat', stream: true, messages: [{ role: 'user', content: 'slow' }] }),
    });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain('"code":"upstream_timeout"');
    expect(text).not.toContain('[DONE]');
  });

  it('reports attempts and the serving target, and 502 when every target fails', async () => {
    const { key } = await newTenant();
    await poolFor(key, 'dead', [chatTarget('d1', 'failStatus=500'), chatTarget('d2', 'failStatus=503')]);
    const res = await api('/v1/chat/completions', { key, body: { model: 'dead', messages: [{ role: 'user', content: 'x' }] } });
    expect(res.status).toBe(502);
    expect(res.body.error.code).toBe('upstream_failed');
    expect(res.headers.get('x-gateway-attempts')).toBe('3');
  });

  it("fails over at once when a target answers 429 with a long Retry-After, and keeps off it meanwhile", async () => {
    const { key } = await newTenant();
    const tag = `ra${Date.now()}`;
    await poolFor(key, 'chat', [chatTarget(`${tag}-busy`, 'failStatus=429,retryAfter=120'), chatTarget(`${tag}-ok`, 'ok', { priority: 1 })], { timeouts: { totalMs: 8_000 } });
    const started = Date.now();
    const first = await api('/v1/chat/completions', { key, body: { model: 'chat', messages: [{ role: 'user', content: 'hello' }] } });
    expect(first.status).toBe(200);
    expect(first.headers.get('x-gateway-attempts')).toBe('2');
    expect(first.headers.get('x-gateway-upstream')).toBe(`chat/${tag}-ok`);
    expect(Date.now() - started).toBeLessThan(2_000);
    // The busy target asked for 120 s: the next request goes straight to the standby.
    const second = await api('/v1/chat/completions', { key, body: { model: 'chat', messages: [{ role: 'user', content: 'again' }] } });
    expect(second.status).toBe(200);
    expect(second.headers.get('x-gateway-attempts')).toBe('1');
    expect(second.headers.get('x-gateway-upstream')).toBe(`chat/${tag}-ok`);
  });

  it('tells the client when to come back (Retry-After) when every attempt was asked to wait', async () => {
    const { key } = await newTenant();
    const tag = `ra2${Date.now()}`;
    await poolFor(key, 'one', [chatTarget(`${tag}-one`, 'status=429,retryAfter=3')], { retry: { attempts: 1 } });
    const one = await api('/v1/chat/completions', { key, body: { model: 'one', messages: [{ role: 'user', content: 'x' }] } });
    expect(one.status).toBe(502);
    expect(one.body.error.code).toBe('upstream_failed');
    expect(one.headers.get('retry-after')).toBe('3');

    // Two targets, each asked for a different pause: the soonest one.
    await poolFor(key, 'two', [chatTarget(`${tag}-a`, 'status=429,retryAfter=120'), chatTarget(`${tag}-b`, 'status=503,retryAfter=30', { priority: 1 })], { retry: { attempts: 2 } });
    const two = await api('/v1/chat/completions', { key, body: { model: 'two', messages: [{ role: 'user', content: 'x' }] } });
    expect(two.status).toBe(502);
    expect(two.headers.get('x-gateway-attempts')).toBe('2');
    expect(two.headers.get('retry-after')).toBe('30');

    // A target that failed without saying when it would be back: no promise to make.
    await poolFor(key, 'mixed', [chatTarget(`${tag}-c`, 'status=429,retryAfter=120'), chatTarget(`${tag}-d`, 'status=500', { priority: 1 })], { retry: { attempts: 2 } });
    const mixed = await api('/v1/chat/completions', { key, body: { model: 'mixed', messages: [{ role: 'user', content: 'x' }] } });
    expect(mixed.status).toBe(502);
    expect(mixed.headers.get('x-gateway-attempts')).toBe('2');
    expect(mixed.headers.get('retry-after')).toBeNull();
  });

  it('waits out a Retry-After when the retry goes back to the target that sent it, and not past the deadline', async () => {
    const { key } = await newTenant();
    const tag = `ra1${Date.now()}`;
    await poolFor(key, 'short', [chatTarget(`${tag}-short`, 'failStatus=503,retryAfter=1')], { retry: { attempts: 2 } });
    const started = Date.now();
    const short = await api('/v1/chat/completions', { key, body: { model: 'short', messages: [{ role: 'user', content: 'x' }] } });
    expect(short.status).toBe(502);
    expect(short.headers.get('x-gateway-attempts')).toBe('2');
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);

    await poolFor(key, 'long', [chatTarget(`${tag}-long`, 'failStatus=503,retryAfter=30')], { timeouts: { totalMs: 8_000 } });
    const long = await api('/v1/chat/completions', { key, body: { model: 'long', messages: [{ role: 'user', content: 'x' }] } });
    expect(long.status).toBe(502);
    expect(long.headers.get('x-gateway-attempts')).toBe('1');
    expect(long.body.error.details.status).toBe(503);
  });

  for (const passThrough of [false, true]) {
    it(`fails a completion over when a target answers 200 with an HTML page${passThrough ? ' (pool passes answers through)' : ''}`, async () => {
      const { key } = await newTenant();
      const tag = `html${Date.now()}`;
      await poolFor(key, 'chat', [chatTarget(`${tag}-proxy`, 'body=<html>bad gateway</html>,contentType=text/html'), chatTarget(`${tag}-ok`, 'ok', { priority: 1 })], { passThrough });
      const res = await api('/v1/chat/completions', { key, body: { model: 'chat', messages: [{ role: 'user', content: 'hello' }] } });
      expect(res.status).toBe(200);
      expect(res.body.choices[0].message.content).toBe('mock reply to: hello');
      expect(res.headers.get('x-gateway-attempts')).toBe('2');
      expect(res.headers.get('x-gateway-upstream')).toBe(`chat/${tag}-ok`);
    });
  }

  it('fails a stream over before its first byte when a target answers 200 with something other than an event stream', async () => {
    const { key } = await newTenant();
    const tag = `nosse${Date.now()}`;
    for (const faults of ['body=<html>bad gateway</html>,contentType=text/html', 'body={"choices":[]},contentType=application/json']) {
      await api('/v1/pools/chat', { method: 'PUT', key, body: { targets: [chatTarget(`${tag}-odd`, faults), chatTarget(`${tag}-ok`, 'ok', { priority: 1 })] } });
      const res = await SELF.fetch(`${BASE}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'chat', stream: true, messages: [{ role: 'user', content: 'hello' }] }),
      });
      const text = await res.text();
      expect(res.status, faults).toBe(200);
      expect(res.headers.get('x-gateway-upstream'), faults).toBe(`chat/${tag}-ok`);
      expect(res.headers.get('x-gateway-attempts'), faults).toBe('2');
      // Only the other target's events: nothing of the odd answer, and no error event.
      expect(text.split('\n\n').filter(Boolean).every((frame) => frame.startsWith('data: ')), text).toBe(true);
      expect(text).not.toContain('"error"');
      expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    }
  });

  it('fails a completion over when a target says JSON but its body does not parse', async () => {
    const { key } = await newTenant();
    const tag = `torn${Date.now()}`;
    await poolFor(key, 'chat', [chatTarget(`${tag}-torn`, 'body={"choices":'), chatTarget(`${tag}-ok`, 'ok', { priority: 1 })]);
    const res = await api('/v1/chat/completions', { key, body: { model: 'chat', messages: [{ role: 'user', content: 'hello' }] } });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-gateway-upstream')).toBe(`chat/${tag}-ok`);
  });

  it('fails a completion over when a target answers 200 with JSON that is no chat completion, and 502 upstream_failed when every target does', async () => {
    const { key } = await newTenant();
    const tag = `nochat${Date.now()}`;
    const ask = () => api('/v1/chat/completions', { key, body: { model: 'chat', messages: [{ role: 'user', content: 'hello' }] } });
    for (const body of ['{}', '[]', '{"choices":"x"}', 'null']) {
      await api('/v1/pools/chat', { method: 'PUT', key, body: { targets: [chatTarget(`${tag}-odd`, `body=${body}`), chatTarget(`${tag}-ok`, 'ok', { priority: 1 })] } });
      const res = await ask();
      expect(res.status, body).toBe(200);
      expect(res.body.choices[0].message.content, body).toBe('mock reply to: hello');
      expect(res.headers.get('x-gateway-attempts'), body).toBe('2');
    }
    // An object with a choices array is a completion, whatever else it holds: handed on as it came.
    await api('/v1/pools/chat', { method: 'PUT', key, body: { targets: [chatTarget(`${tag}-empty`, 'body={"choices":[]}'), chatTarget(`${tag}-ok`, 'ok', { priority: 1 })] } });
    const empty = await ask();
    expect(empty.body).toEqual({ choices: [] });
    expect(empty.headers.get('x-gateway-attempts')).toBe('1');
    await api('/v1/pools/chat', { method: 'PUT', key, body: { retry: { attempts: 2 }, targets: [chatTarget(`${tag}-a`, 'body={}'), chatTarget(`${tag}-b`, 'body=[]')] } });
    const failed = await ask();
    expect(failed.status).toBe(502);
    expect(failed.body.error.code).toBe('upstream_failed');
    expect(failed.body.error.message).toContain('not a chat completion');
    expect(failed.headers.get('x-gateway-attempts')).toBe('2');
  });

  it('cuts off a completion whose body stalls after its headers, at the first-byte limit', async () => {
    const { key } = await newTenant();
    await poolFor(key, 'chat', [chatTarget(`stall${Date.now()}`, 'stallBody=true', { timeoutMs: 200 })], { retry: { attempts: 2 } });
    const res = await api('/v1/chat/completions', { key, body: { model: 'chat', messages: [{ role: 'user', content: 'x' }] } });
    expect(res.status).toBe(504);
    expect(res.body.error.code).toBe('upstream_timeout');
    expect(res.headers.get('x-gateway-attempts')).toBe('2');
  });

  it("relays a target's 4xx whose body stalls after its headers with its status and an error naming the stall, never an empty body", async () => {
    const { key } = await newTenant();
    const tag = `stall4${Date.now()}`;
    await poolFor(key, 'chat', [chatTarget(tag, 'stallBody=true,stallStatus=401', { timeoutMs: 300 })], { retry: { attempts: 2 } });
    const started = Date.now();
    const res = await api('/v1/chat/completions', { key, body: { model: 'chat', messages: [{ role: 'user', content: 'x' }] } });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(res.status).toBe(401);
    expect(res.headers.get('x-gateway-upstream')).toBe(`chat/${tag}`);
    expect(res.headers.get('x-gateway-attempts')).toBe('1');
    expect(res.body.error.type).toBe('upstream_error');
    expect(res.body.error.message).toContain('stalled');
    // What did arrive is shown, inside a body that parses.
    expect(res.body.error.message).toContain('{"id":');
  });

  it("fails over from a target's 5xx at once, without waiting for a body that stalls (the chat never shows it)", async () => {
    const { key } = await newTenant();
    const tag = `stall5${Date.now()}`;
    await poolFor(key, 'chat', [chatTarget(`${tag}-a`, 'stallBody=true,stallStatus=503', { timeoutMs: 5_000 }), chatTarget(`${tag}-b`, 'ok', { priority: 1 })], { retry: { attempts: 2 } });
    const started = Date.now();
    const res = await api('/v1/chat/completions', { key, body: { model: 'chat', messages: [{ role: 'user', content: 'x' }] } });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-gateway-upstream')).toBe(`chat/${tag}-b`);
    expect(Date.now() - started).toBeLessThan(2_500);
  });

  it('hands an answer on unread when the pool passes answers through, and never caches one that does not parse', async () => {
    const { key } = await newTenant();
    const tag = `pt${Date.now()}`;
    await poolFor(key, 'good', [chatTarget(`${tag}-ok`)], { passThrough: true });
    const completion = await client(key).chat.completions.create({ model: 'good', messages: [{ role: 'user', content: 'hello' }] });
    expect(completion.choices[0]?.message.content).toBe('mock reply to: hello');
    expect((await api('/v1/pools/good', { key })).body.passThrough).toBe(true);

    await poolFor(key, 'torn', [chatTarget(`${tag}-torn`, 'body={"choices":')], { passThrough: true });
    for (const _ of [1, 2]) {
      const res = await SELF.fetch(`${BASE}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-gateway-cache-ttl': '60' },
        body: JSON.stringify({ model: 'torn', messages: [{ role: 'user', content: 'cache me' }] }),
      });
      expect(res.headers.get('x-gateway-cache')).toBe('BYPASS');
      expect(await res.text()).toBe('{"choices":');
    }

    // JSON that is no chat completion (a proxy's 200 error) is handed on too, and never stored:
    // it used to be, and answered every such chat for the TTL after the target had recovered.
    const notCompletion = JSON.stringify({ error: { message: 'overloaded, try again', type: 'server_error' } });
    await poolFor(key, 'odd', [{ ...chatTarget(`${tag}-odd`), baseUrl: `${mockUrl('/v1')}?target=${tag}-odd&body=${encodeURIComponent(notCompletion)}` }], { passThrough: true });
    for (const _ of [1, 2]) {
      const res = await SELF.fetch(`${BASE}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-gateway-cache-ttl': '60' },
        body: JSON.stringify({ model: 'odd', messages: [{ role: 'user', content: 'cache me' }] }),
      });
      expect(res.headers.get('x-gateway-cache')).toBe('BYPASS');
      expect(await res.text()).toBe(notCompletion);
    }
  });

  it("prefers the caller's region whatever the case it was written in, and keeps it as written", async () => {
    const { key } = await newTenant();
    const tag = `rg${Date.now()}`;
    await poolFor(key, 'geo', [chatTarget(`${tag}-eu`, 'ok', { region: 'eu' }), chatTarget(`${tag}-na`, 'ok', { region: 'na' }), chatTarget(`${tag}-dfw`, 'ok', { region: 'dfw' })]);
    expect((await api('/v1/pools/geo', { key })).body.targets.map((t: { region: string }) => t.region)).toEqual(['eu', 'na', 'dfw']);
    const servedFor = async (cf: Record<string, unknown>) => {
      const served = new Set<string | null>();
      for (let i = 0; i < 4; i++) served.add((await api('/v1/chat/completions', { key, cf, body: { model: 'geo', messages: [{ role: 'user', content: 'x' }] } })).headers.get('x-gateway-upstream'));
      return [...served];
    };
    expect(await servedFor({ continent: 'NA', colo: 'ORD' })).toEqual([`geo/${tag}-na`]);
    expect(await servedFor({ continent: 'SA', colo: 'DFW' })).toEqual([`geo/${tag}-dfw`]);
    expect(await servedFor({ continent: 'EU', colo: 'AMS' })).toEqual([`geo/${tag}-eu`]);
  });

  it('passes a 4xx from the upstream through without retrying', async () => {
    const { key } = await newTenant();
    // The healthy target is a standby, so the first attempt is the 4xx one whatever the round robin's start.
    await poolFor(key, 'bad', [chatTarget(`b${Date.now()}`, 'status=400'), chatTarget('b2', 'ok', { priority: 1 })]);
    const res = await api('/v1/chat/completions', { key, body: { model: 'bad', messages: [{ role: 'user', content: 'x' }] } });
    expect(res.status).toBe(400);
    expect(res.headers.get('x-gateway-attempts')).toBe('1');
  });

  it("passes a target's own 4xx through as it came, told apart from the gateway's by x-gateway-upstream, as the document says", async () => {
    const { key } = await newTenant();
    const tag = `u${Date.now()}`;
    await poolFor(key, 'creds', [chatTarget(tag, 'status=401')]);
    const res = await api('/v1/chat/completions', { key, body: { model: 'creds', messages: [{ role: 'user', content: 'x' }] } });
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: 'injected status' });
    expect(res.headers.get('x-gateway-upstream')).toBe(`creds/${tag}`);
    expect(res.headers.get('x-gateway-attempts')).toBe('1');
    // The gateway's own 401 carries no x-gateway-upstream.
    expect((await api('/v1/chat/completions', { key: 'eag_wrong', body: { model: 'creds', messages: [] } })).headers.get('x-gateway-upstream')).toBeNull();

    const doc = (await api('/openapi.json')).body;
    const passed = doc.paths['/v1/chat/completions'].post.responses['4XX'];
    expect(passed.description).toMatch(/passed through/);
    expect(Object.keys(passed.headers)).toEqual(expect.arrayContaining(['x-gateway-upstream', 'x-gateway-attempts']));
  });

  it('answers from a builtin target offline', async () => {
    const { key } = await newTenant();
    await poolFor(key, 'local', [{ id: 'faq', kind: 'builtin' }]);
    const completion = await client(key).chat.completions.create({ model: 'local', messages: [{ role: 'user', content: 'How do refunds work?' }] });
    expect(completion.choices[0]?.message.content).toMatch(/Refunds are issued/);
  });

  it('holds a builtin target\'s answer to max_tokens or max_completion_tokens, as a model does: cut, finished by "length"', async () => {
    const { key } = await newTenant();
    await poolFor(key, 'local', [{ id: 'faq', kind: 'builtin' }]);
    const messages = [{ role: 'user' as const, content: 'How long does shipping take?' }];
    const whole = await client(key).chat.completions.create({ model: 'local', messages });
    expect(whole.usage?.completion_tokens).toBeGreaterThan(5);
    expect(whole.choices[0]?.finish_reason).toBe('stop');
    for (const cap of [{ max_tokens: 5 }, { max_completion_tokens: 5 }, { max_completion_tokens: 5, max_tokens: 100 }]) {
      const cut = await client(key).chat.completions.create({ model: 'local', messages, ...cap });
      expect(cut.usage?.completion_tokens, JSON.stringify(cap)).toBe(5);
      expect(cut.choices[0]?.finish_reason, JSON.stringify(cap)).toBe('length');
      expect(whole.choices[0]?.message.content?.startsWith(cut.choices[0]?.message.content ?? 'none'), JSON.stringify(cap)).toBe(true);
    }
    const stream = await client(key).chat.completions.create({ model: 'local', messages, max_tokens: 5, stream: true, stream_options: { include_usage: true } });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.at(-1)?.usage?.completion_tokens).toBe(5);
    expect(chunks.map((c) => c.choices[0]?.finish_reason).filter(Boolean)).toEqual(['length']);
  });

  it("keeps a builtin target's answer within what a key's token budget reserved for it", async () => {
    const { key, otherKey } = await limitedKey({ budget: { tokens: 20, period: 'day' } });
    await poolFor(otherKey, 'local', [{ id: 'faq', kind: 'builtin' }]);
    // About 31 tokens whole: the key had room for 20, prompt included, so its answer is capped to fit.
    const cut = await client(key).chat.completions.create({ model: 'local', messages: [{ role: 'user', content: 'How long does shipping take?' }] });
    expect(cut.choices[0]?.finish_reason).toBe('length');
    expect(cut.usage?.total_tokens).toBeLessThanOrEqual(20);
    const usage = await settledUsage(key);
    expect(usage.budget.tokens).toBeGreaterThan(0);
    expect(usage.budget.tokens).toBeLessThanOrEqual(20);
  });

  it("refuses a chat through an agent that a key's token budget cannot reserve whole, as an execution: nothing caps the agent's answer", async () => {
    const { key, otherKey } = await limitedKey({ budget: { tokens: 20, period: 'day' } });
    const id = await newAgent(otherKey);
    for (const headers of [{}, { 'x-agent-id': id }] as Record<string, string>[]) {
      const res = await api('/v1/chat/completions', { key, headers, body: { model: `agent:${id}`, messages: [{ role: 'user', content: 'How long does shipping take?' }] } });
      expect(res.status).toBe(429);
      expect(res.body.error.code).toBe('budget_exhausted');
    }
    // As a REST execution of the same turn is.
    expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'chat', input: { message: 'How long does shipping take?' } } })).status).toBe(429);
    expect((await api(`/v1/agents/${id}/status`, { key: otherKey })).body.lastExecution).toBeNull();
    expect((await api('/v1/usage', { key })).body.budget.tokens).toBe(0);
  });

  it("reserves a chat through an agent as an execution of the same turn, whatever max_tokens it states: the agent's run is not capped by it", async () => {
    const { key, otherKey } = await limitedKey({ budget: { tokens: 20, period: 'day' } });
    const id = await newAgent(otherKey);
    // max_tokens: 1 reserved two tokens, and the agent's run then used what it used: concurrent
    // chats so made all ran, past the budget (five of them used 75 of 20 tokens against an openai-chat agent).
    const res = await api('/v1/chat/completions', { key, body: { model: `agent:${id}`, max_tokens: 1, messages: [{ role: 'user', content: 'x' }] } });
    expect(res.status).toBe(429);
    expect(res.body.error.code).toBe('budget_exhausted');
    // As a REST execution of the same turn is.
    expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'chat', input: { message: 'x' } } })).status).toBe(429);
    expect((await api(`/v1/agents/${id}/status`, { key: otherKey })).body.lastExecution).toBeNull();
    expect((await api('/v1/usage', { key })).body.budget.tokens).toBe(0);
  });

  it("caps a chat whose max_tokens is null (no value) to what a key's token budget reserved, as one that sends none", async () => {
    const { key, otherKey } = await limitedKey({ budget: { tokens: 20, period: 'day' } });
    await poolFor(otherKey, 'local', [{ id: 'faq', kind: 'builtin' }]);
    // null is no cap (the client's types allow it): the key's cap applies, as to a chat without max_tokens.
    const cut = await client(key).chat.completions.create({ model: 'local', max_tokens: null, max_completion_tokens: null, messages: [{ role: 'user', content: 'How long does shipping take?' }] });
    expect(cut.choices[0]?.finish_reason).toBe('length');
    expect(cut.usage?.total_tokens).toBeLessThanOrEqual(20);
    const usage = await settledUsage(key);
    expect(usage.budget.tokens).toBeLessThanOrEqual(20);
    // Nor does a cap that is no number of tokens, which a builtin target used to answer uncapped, past the budget.
    for (const max_tokens of [-5, 'many']) {
      const { key: other, otherKey: admin } = await limitedKey({ budget: { tokens: 20, period: 'day' } });
      await poolFor(admin, 'local', [{ id: 'faq', kind: 'builtin' }]);
      const res = await api('/v1/chat/completions', { key: other, body: { model: 'local', max_tokens, messages: [{ role: 'user', content: 'How long does shipping take?' }] } });
      expect(res.body.usage.total_tokens, String(max_tokens)).toBeLessThanOrEqual(20);
    }
  });

  it('lists pools and their models', async () => {
    const { key } = await newTenant();
    await poolFor(key, 'chat', [chatTarget('x1'), chatTarget('x2', 'ok', { model: 'big' })]);
    const models = await client(key).models.list();
    expect(models.data.map((m) => m.id).sort()).toEqual(['chat', 'chat/big', 'chat/mock-model']);
    // Each listed model is retrieved as listed, its slash sent as is or as %2F (the client's versions differ).
    for (const model of models.data) expect(await client(key).models.retrieve(model.id), model.id).toMatchObject({ id: model.id, object: 'model', created: model.created, owned_by: 'edge-agent-gateway' });
    expect((await api('/v1/models/chat%2Fbig', { key })).body).toMatchObject({ id: 'chat/big' });
    // Unknown models, another tenant's pool and names no pool can have are 404 not_found.
    const other = await newTenant();
    for (const [path, k] of [['/v1/models/chat/none', key], ['/v1/models/none', key], ['/v1/models/chat', other.key], ['/v1/models/%2F..%2Fx', key]] as const) {
      const res = await api(path, { key: k });
      expect(res.status, path).toBe(404);
      expect(res.body.error.code, path).toBe('not_found');
    }
  });

  it('retrieves a model whose name holds "%", and answers an id that is no valid percent-encoding 404, not 500', async () => {
    const { key } = await newTenant();
    await poolFor(key, 'pct', [chatTarget('p1', 'ok', { model: '100%-mini' })]);
    expect(await client(key).models.retrieve('pct/100%-mini')).toMatchObject({ id: 'pct/100%-mini', object: 'model' });
    for (const path of ['/v1/models/%', '/v1/models/pct%2F%E0%A4%A', '/v1/models/%25', '/v1/models/pct%2F100%25']) {
      const res = await api(path, { key });
      expect(res.status, path).toBe(404);
      expect(res.body.error.code, path).toBe('not_found');
    }
  });

  it('lists only what chat completions can answer: no pool of agent-http targets alone, no agent-http target\'s model', async () => {
    const { key, tenantId } = await newTenant();
    // A PUT now refuses a model on an agent-http target: these were stored before it did.
    const agentTarget = (id: string, model: string) => ({ id, kind: 'agent-http' as const, url: 'https://agent.example.com/run', model, weight: 1, priority: 0 });
    await putPool(env, tenantId, 'agents-only', { strategy: 'weighted-round-robin', targets: [agentTarget('h1', 'agent-model')] });
    await putPool(env, tenantId, 'mixed', { strategy: 'weighted-round-robin', targets: [{ ...chatTarget(`mx${Date.now()}`), kind: 'openai-chat', weight: 1, priority: 0 }, agentTarget('h2', 'other-agent-model')] });
    const refused = await api('/v1/chat/completions', { key, body: { model: 'agents-only', messages: [{ role: 'user', content: 'x' }] } });
    expect(refused.status).toBe(400);
    const models = await client(key).models.list();
    expect(models.data.map((m) => m.id).sort()).toEqual(['mixed', 'mixed/mock-model']);
  });

  it('spends every attempt on the chat targets of a pool that also has agent-http ones', async () => {
    const { key } = await newTenant();
    await poolFor(key, 'with-agent', [chatTarget(`wa${Date.now()}`, 'failStatus=503'), { id: 'h', kind: 'agent-http', url: 'https://agent.example.com/run' }], { retry: { attempts: 3 } });
    const res = await api('/v1/chat/completions', { key, body: { model: 'with-agent', messages: [{ role: 'user', content: 'x' }] } });
    expect(res.status).toBe(502);
    expect(res.headers.get('x-gateway-attempts')).toBe('3');
  });

  it('refuses a model with an empty part (pool/, agent:) as 400 at model, where the target would have answered', async () => {
    const { key } = await newTenant();
    const tag = `empty${Date.now()}`;
    await poolFor(key, 'chat', [chatTarget(tag)]);
    for (const model of ['chat/', 'agent:']) {
      const res = await api('/v1/chat/completions', { key, body: { model, messages: [{ role: 'user', content: 'x' }] } });
      expect(res.status, model).toBe(400);
      expect(res.body.error.code, model).toBe('invalid_request');
      expect(res.body.error.details, model).toEqual([expect.objectContaining({ path: ['model'] })]);
    }
  });

  it('refuses "agent:<id>" whose id no agent can have (a slash, a space, over 64 characters) as 400 at model, not 404', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    for (const model of ['agent:a/b', `agent:${id}/x`, 'agent:a b', `agent:${'a'.repeat(65)}`]) {
      for (const headers of [{}, { 'x-agent-id': id }] as Record<string, string>[]) {
        const res = await api('/v1/chat/completions', { key, headers, body: { model, messages: [{ role: 'user', content: 'x' }] } });
        expect(res.status, model).toBe(400);
        expect(res.body.error, model).toMatchObject({ code: 'invalid_request', param: 'model', details: [expect.objectContaining({ path: ['model'] })] });
      }
    }
    expect((await api(`/v1/agents/${id}/status`, { key })).body.lastExecution).toBeNull();
  });

  it('takes null for stream and temperature, as OpenAI does and the client\'s types allow, null being no value', async () => {
    const { key } = await newTenant();
    await poolFor(key, 'nulls', [chatTarget(`n${Date.now()}`)], { cache: { ttlSeconds: 60 } });
    const messages = [{ role: 'user' as const, content: 'null please' }];
    const completion = await client(key).chat.completions.create({ model: 'nulls', messages, stream: null, temperature: null });
    expect(completion.choices[0]?.message.content).toBe('mock reply to: null please');
    // No temperature is no temperature 0: the pool's cache keeps deterministic requests only.
    const again = await api('/v1/chat/completions', { key, body: { model: 'nulls', messages, temperature: null } });
    expect(again.status).toBe(200);
    expect(again.headers.get('x-gateway-cache')).toBeNull();
  });

  it('answers 404 for an unknown pool and 400 for a bad request', async () => {
    const { key } = await newTenant();
    expect((await api('/v1/chat/completions', { key, body: { model: 'nope', messages: [{ role: 'user', content: 'x' }] } })).status).toBe(404);
    expect((await api('/v1/chat/completions', { key, body: { model: 'nope', messages: [] } })).status).toBe(400);
    expect((await api('/v1/chat/completions', { key, body: { messages: [{ role: 'user', content: 'x' }] } })).status).toBe(400);
  });
});

describe('chat through an agent', () => {
  it('keeps the conversation in the agent (model "agent:<id>" or x-agent-id)', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const first = await client(key).chat.completions.create({ model: `agent:${id}`, messages: [{ role: 'user', content: 'When are you open?' }] });
    expect(first.choices[0]?.message.content).toMatch(/Monday to Friday/);
    const raw = await api('/v1/chat/completions', { key, headers: { 'x-agent-id': id }, body: { model: 'anything', messages: [{ role: 'user', content: 'hello' }] } });
    expect(raw.status).toBe(200);
    expect(raw.headers.get('x-gateway-execution')).toMatch(/^ex_/);
    const status = await api(`/v1/agents/${id}/status`, { key });
    expect(status.body.contextVersion).toBe(2);
    const stream = await client(key).chat.completions.create({ model: `agent:${id}`, messages: [{ role: 'user', content: 'shipping?' }], stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toMatch(/Standard shipping/);
  });

  it('names the serving target <pool>/<target> in x-gateway-upstream, as the pool path does', async () => {
    const { key } = await newTenant();
    const tag = `ag${Date.now()}`;
    await poolFor(key, 'f3', [chatTarget(`${tag}-a`, 'failStatus=503'), chatTarget(`${tag}-b`, 'ok', { priority: 1 })]);
    const id = await newAgent(key, { upstream: { kind: 'pool', pool: 'f3' } });
    const res = await api('/v1/chat/completions', { key, headers: { 'x-agent-id': id }, body: { model: 'x', messages: [{ role: 'user', content: 'hi' }] } });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-gateway-upstream')).toBe(`f3/${tag}-b`);
    expect(res.headers.get('x-gateway-attempts')).toBe('2');
    // The execution keeps its own label.
    expect((await api(`/v1/agents/${id}/executions/${res.headers.get('x-gateway-execution')}`, { key })).body.upstream).toBe(`pool f3/${tag}-b`);

    await poolFor(key, 'down', [chatTarget(`${tag}-d`, 'failStatus=503')], { retry: { attempts: 1 } });
    const failing = await newAgent(key, { upstream: { kind: 'pool', pool: 'down' } });
    const failed = await api('/v1/chat/completions', { key, body: { model: `agent:${failing}`, messages: [{ role: 'user', content: 'hi' }] } });
    expect(failed.status).toBe(502);
    expect(failed.headers.get('x-gateway-upstream')).toBe(`down/${tag}-d`);

    // An agent whose upstream is not a pool is named by its upstream.
    const builtin = await newAgent(key);
    const local = await api('/v1/chat/completions', { key, body: { model: `agent:${builtin}`, messages: [{ role: 'user', content: 'hi' }] } });
    expect(local.headers.get('x-gateway-upstream')).toBe('builtin');
  });

  it("answers an agent-http back end's string output as the content itself, not as JSON text in quotes", async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl('/agent?outputBytes=12') } });
    const answer = await client(key).chat.completions.create({ model: `agent:${id}`, messages: [{ role: 'user', content: 'hi' }] });
    expect(answer.choices[0]?.message.content).toBe('o'.repeat(12));
    // Any other output is its JSON text, as before.
    const structured = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl('/agent?answerBytes=40') } });
    const json = await client(key).chat.completions.create({ model: `agent:${structured}`, messages: [{ role: 'user', content: 'hi' }] });
    expect(JSON.parse(json.choices[0]?.message.content ?? 'none')).toHaveProperty('answer');
  });

  it("names messages as the client's APIError.param when no message is the user's turn", async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const refused = await client(key).chat.completions.create({ model: `agent:${id}`, messages: [{ role: 'system', content: 'be brief' }] }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(OpenAI.BadRequestError);
    expect((refused as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('messages');
  });

  it("answers 404 for another tenant's agent", async () => {
    const owner = await newTenant();
    const other = await newTenant();
    const id = await newAgent(owner.key);
    const res = await api('/v1/chat/completions', { key: other.key, body: { model: `agent:${id}`, messages: [{ role: 'user', content: 'x' }] } });
    expect(res.status).toBe(404);
  });

  it("bounds the turn as any execution's input (256 KiB), as REST, A2A and MCP do, starting nothing", async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    // 300,000 characters: within a chat message's bound (a pool's target takes it), over an execution input's.
    const long = 'x'.repeat(300_000);
    const rest = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'chat', input: { message: long } } });
    expect(rest.status).toBe(400);
    const res = await api('/v1/chat/completions', { key, body: { model: `agent:${id}`, messages: [{ role: 'user', content: long }, { role: 'assistant', content: 'ok' }] } });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: 'invalid_request', param: 'messages.0.content', details: [{ path: ['messages', 0, 'content'] }] });
    expect(res.headers.get('x-gateway-execution')).toBeNull();
    expect((await api(`/v1/agents/${id}/status`, { key })).body.lastExecution).toBeNull();
    // Earlier turns are the caller's transcript, not the execution's input: only the last user message counts.
    const fits = await api('/v1/chat/completions', { key, body: { model: `agent:${id}`, messages: [{ role: 'user', content: long }, { role: 'user', content: 'hello' }] } });
    expect(fits.status).toBe(200);
  });
});

describe('a chat through an agent with an Idempotency-Key', () => {
  const turn = (key: string, id: string, content: string, headers: Record<string, string> = {}, extra: Record<string, unknown> = {}) =>
    api('/v1/chat/completions', { key, headers, body: { model: `agent:${id}`, messages: [{ role: 'user', content }], ...extra } });

  it('runs the turn once: the same key and body replay its answer, another body is 422, as REST executions do', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const headers = { 'idempotency-key': 'turn-1' };
    const first = await turn(key, id, 'When are you open?', headers);
    expect(first.status).toBe(200);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    const again = await turn(key, id, 'When are you open?', headers);
    expect(again.status).toBe(200);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.headers.get('x-gateway-execution')).toBe(first.headers.get('x-gateway-execution'));
    expect(again.body.choices).toEqual(first.body.choices);
    // Streamed or not is how the answer is delivered, not another turn. A second later: its `created` is the turn's, not now.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const streamed = await SELF.fetch(`${BASE}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ model: `agent:${id}`, messages: [{ role: 'user', content: 'When are you open?' }], stream: true }),
    });
    expect(streamed.status).toBe(200);
    expect(streamed.headers.get('x-gateway-execution')).toBe(first.headers.get('x-gateway-execution'));
    const text = await streamed.text();
    expect(text).toContain('Monday to Friday');
    const chunks = text.split('\n\n').filter((event) => event.startsWith('data: {')).map((event) => JSON.parse(event.slice('data: '.length)));
    expect(chunks.length).toBeGreaterThan(0);
    for (const chunk of chunks) expect({ id: chunk.id, created: chunk.created }).toEqual({ id: first.body.id, created: first.body.created });
    const other = await turn(key, id, 'Something else', headers);
    expect(other.status).toBe(422);
    expect(other.body.error.code).toBe('idempotency_key_reused');
    // One turn ran and joined the history once.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect((await api(`/v1/agents/${id}/executions`, { key })).body.data).toHaveLength(1);
    expect((await api(`/v1/agents/${id}/status`, { key })).body.contextVersion).toBe(1);
    // The key is the agent's, whichever face used it first: a REST execution under it is another request.
    const rest = await api(`/v1/agents/${id}/executions`, { key, headers, body: { intent: 'chat', input: { message: 'When are you open?' } } });
    expect(rest.status).toBe(422);
    // Without a key every turn is a new one, as before.
    expect((await turn(key, id, 'When are you open?')).headers.get('x-gateway-execution')).not.toBe(first.headers.get('x-gateway-execution'));
  });

  it('checks the key only where it is used: a malformed one is 400 through an agent, while a chat to a pool takes any header as before', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    await poolFor(key, 'chat', [chatTarget(`k${Date.now()}`)]);
    for (const bad of ['x'.repeat(256), 'hook:h_1:msg_1']) {
      const refused = await turn(key, id, 'hello', { 'idempotency-key': bad });
      expect(refused.status).toBe(400);
      expect(refused.body.error).toMatchObject({ code: 'invalid_request', param: 'idempotency-key' });
      const pool = await api('/v1/chat/completions', { key, headers: { 'idempotency-key': bad }, body: { model: 'chat', messages: [{ role: 'user', content: 'hello' }] } });
      expect(pool.status).toBe(200);
    }
    expect((await api(`/v1/agents/${id}/executions`, { key })).body.data).toEqual([]);
  });

  it("answers a keyed turn's replay when the key's budget is used up, and refuses a new one", async () => {
    const { key, otherKey } = await limitedKey({ budget: { requests: 1, period: 'day' } });
    const id = await newAgent(otherKey);
    const headers = { 'idempotency-key': 'paid-once' };
    const first = await turn(key, id, 'hello', headers);
    expect(first.status).toBe(200);
    const replay = await turn(key, id, 'hello', headers);
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    const refused = await turn(key, id, 'hello', { 'idempotency-key': 'a-new-one' });
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('budget_exhausted');
  });
});

describe("the official client's own retries", () => {
  /** The client with its default retries (2), counting the requests it sends. */
  const retrying = (key: string) => {
    const sent = { count: 0 };
    const fetch = (input: any, init?: any) => {
      sent.count++;
      return SELF.fetch(input, init);
    };
    return { sent, openai: new OpenAI({ apiKey: key, baseURL: `${BASE}/v1`, fetch, maxRetries: 2 }) };
  };
  /** What `call` threw, or 'still waiting' when it has not settled within `ms` (a retry asleep). */
  const settled = (call: Promise<unknown>, ms = 5_000) =>
    Promise.race([call.then(() => 'answered', (error: unknown) => error), new Promise((resolve) => setTimeout(() => resolve('still waiting'), ms))]);

  it('are not spent on a used-up budget, whose Retry-After (the next period) they would sleep out', async () => {
    const { key } = await limitedKey({ budget: { requests: 1, period: 'day' } });
    const { sent, openai } = retrying(key);
    await openai.chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'one' }] });
    const refused = await settled(openai.chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'two' }] }));
    expect(refused).toBeInstanceOf(OpenAI.RateLimitError);
    expect((refused as InstanceType<typeof OpenAI.RateLimitError>).code).toBe('budget_exhausted');
    expect(sent.count).toBe(2);
  });

  it('are not spent on a paused agent', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    expect((await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { paused: true } })).status).toBe(200);
    const { sent, openai } = retrying(key);
    const refused = await settled(openai.chat.completions.create({ model: `agent:${id}`, messages: [{ role: 'user', content: 'hello' }] }));
    expect(refused).toBeInstanceOf(OpenAI.ConflictError);
    expect((refused as InstanceType<typeof OpenAI.ConflictError>).code).toBe('agent_paused');
    expect(sent.count).toBe(1);
    // Worded for a chat, which has no `mode` to queue with (REST's advice used to be given).
    const message = (refused as InstanceType<typeof OpenAI.ConflictError>).message;
    expect(message).not.toMatch(/use mode "async" to queue work/);
    expect(message).toMatch(/paused; a chat .*POST \/v1\/agents\/\{id\}\/executions/);
  });

  it('are not spent on a chat the gateway stopped trying, at a failure every attempt would meet again', async () => {
    const { key } = await newTenant();
    // A redirect is never followed (the outbound guard checked the stored URL only), nor retried.
    await poolFor(key, 'moved', [chatTarget(`mv${Date.now()}`, `status=308,location=${env.MOCK_UPSTREAM_URL}/elsewhere`)]);
    const { sent, openai } = retrying(key);
    const refused = await settled(openai.chat.completions.create({ model: 'moved', messages: [{ role: 'user', content: 'hello' }] }));
    expect(refused).toBeInstanceOf(OpenAI.InternalServerError);
    expect((refused as InstanceType<typeof OpenAI.InternalServerError>).code).toBe('upstream_failed');
    expect(sent.count).toBe(1);
    // A failure another attempt may get past is the client's to retry, as before.
    await poolFor(key, 'flaky', [chatTarget(`fl${Date.now()}`, 'failStatus=503')], { retry: { attempts: 1 } });
    const failed = await api('/v1/chat/completions', { key, body: { model: 'flaky', messages: [{ role: 'user', content: 'hello' }] } });
    expect(failed.status).toBe(502);
    expect(failed.headers.get('x-should-retry')).toBeNull();
  });

  it('are not spent on a chat through an agent whose back end may have done the work, nor on a sync execution', async () => {
    const { key } = await newTenant();
    // A 200 that is not JSON: the agent-http back end answered, so the gateway does not ask again.
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl('/agent?body=not-json') } });
    const { sent, openai } = retrying(key);
    const refused = await settled(openai.chat.completions.create({ model: `agent:${id}`, messages: [{ role: 'user', content: 'hello' }] }));
    expect(refused).toBeInstanceOf(OpenAI.InternalServerError);
    expect((refused as InstanceType<typeof OpenAI.InternalServerError>).code).toBe('upstream_failed');
    expect(sent.count).toBe(1);
    await eventually(async () => (await api(`/v1/agents/${id}/executions`, { key })).body.data.length === 1);
    const sync = await api(`/v1/agents/${id}/executions`, { method: 'POST', key, body: { intent: 'x', mode: 'sync' } });
    expect(sync.status).toBe(502);
    expect(sync.headers.get('x-should-retry')).toBe('false');
    expect(sync.body.error.details.execution.error.retryable).toBe(false);
    // A back end that failed in a way another attempt may get past is still the client's to retry.
    const flaky = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl('/agent?failStatus=503') } });
    const failed = await api('/v1/chat/completions', { key, body: { model: `agent:${flaky}`, messages: [{ role: 'user', content: 'hello' }] } });
    expect(failed.status).toBe(502);
    expect(failed.headers.get('x-should-retry')).toBeNull();
  });

  it('are not spent on a keyed chat turn that failed, which its Idempotency-Key answers alike every time', async () => {
    const { key } = await newTenant();
    // A failure another attempt may get past, without a key: the client's retries are what help it.
    const flaky = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl('/agent?failStatus=503') } });
    const { sent, openai } = retrying(key);
    const refused = await settled(openai.chat.completions.create({ model: `agent:${flaky}`, messages: [{ role: 'user', content: 'hello' }] }, { headers: { 'Idempotency-Key': 'keyed-failure' } }), 15_000);
    expect(refused).toBeInstanceOf(OpenAI.InternalServerError);
    expect(sent.count).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect((await api(`/v1/agents/${flaky}/executions`, { key })).body.data).toHaveLength(1);
  });

  it('never run a chat turn cancelled while its caller waited a second time', async () => {
    const { key } = await newTenant();
    await poolFor(key, 'slow', [chatTarget(`cx${Date.now()}`, 'delayMs=1500')]);
    const id = await newAgent(key, { upstream: { kind: 'pool', pool: 'slow' } });
    const { sent, openai } = retrying(key);
    // Settled from the start: its refusal may come while the test is still finding the execution.
    const chat = settled(openai.chat.completions.create({ model: `agent:${id}`, messages: [{ role: 'user', content: 'take your time' }] }), 10_000);
    const running = await eventually(async () => (await api(`/v1/agents/${id}/executions?status=running`, { key })).body.data[0]);
    expect((await api(`/v1/agents/${id}/executions/${running.id}/cancel`, { method: 'POST', key })).status).toBe(200);
    const refused = await chat;
    expect(refused).toBeInstanceOf(OpenAI.ConflictError);
    expect((refused as InstanceType<typeof OpenAI.ConflictError>).code).toBe('execution_cancelled');
    expect(sent.count).toBe(1);
    // The cancelled turn is the agent's only execution: the client did not start it again.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect((await api(`/v1/agents/${id}/executions`, { key })).body.data.map((e: { id: string }) => e.id)).toEqual([running.id]);
  });
});

describe('response cache', () => {
  it('caches deterministic requests when the pool opts in', async () => {
    const { key } = await newTenant();
    await poolFor(key, 'cached', [chatTarget(`c${Date.now()}`)], { cache: { ttlSeconds: 60 } });
    const body = { model: 'cached', temperature: 0, messages: [{ role: 'user', content: 'same question' }] };
    const first = await api('/v1/chat/completions', { key, body });
    const second = await api('/v1/chat/completions', { key, body });
    expect(first.headers.get('x-gateway-cache')).toBe('MISS');
    expect(second.headers.get('x-gateway-cache')).toBe('HIT');
    expect(second.body).toEqual(first.body);
    const creative = await api('/v1/chat/completions', { key, body: { ...body, temperature: 0.8 } });
    expect(creative.headers.get('x-gateway-cache')).toBeNull();
  });

  it('caches on request with x-gateway-cache-ttl, keyed per tenant', async () => {
    const a = await newTenant();
    const b = await newTenant();
    for (const t of [a, b]) await poolFor(t.key, 'p', [chatTarget(`r${Date.now()}`)]);
    const body = { model: 'p', temperature: 0.9, messages: [{ role: 'user', content: 'cache me' }] };
    const headers = { 'x-gateway-cache-ttl': '60' };
    expect((await api('/v1/chat/completions', { key: a.key, body, headers })).headers.get('x-gateway-cache')).toBe('MISS');
    expect((await api('/v1/chat/completions', { key: a.key, body, headers })).headers.get('x-gateway-cache')).toBe('HIT');
    expect((await api('/v1/chat/completions', { key: b.key, body, headers })).headers.get('x-gateway-cache')).toBe('MISS');
  });

  it('never answers from what a replaced or deleted pool of the same name stored', async () => {
    const { key } = await newTenant();
    await poolFor(key, 'redefined', [chatTarget(`old${Date.now()}`)], { cache: { ttlSeconds: 600 } });
    const body = { model: 'redefined', temperature: 0, messages: [{ role: 'user', content: 'who answers?' }] };
    expect((await api('/v1/chat/completions', { key, body })).headers.get('x-gateway-cache')).toBe('MISS');
    expect((await api('/v1/chat/completions', { key, body })).headers.get('x-gateway-cache')).toBe('HIT');

    // Replaced: the built-in responder answers now, not the old target's stored answer.
    const replaced = await api('/v1/pools/redefined', { method: 'PUT', key, body: { targets: [{ id: 'new', kind: 'builtin' }], cache: { ttlSeconds: 600 } } });
    expect(replaced.status).toBe(200);
    const afterPut = await api('/v1/chat/completions', { key, body });
    expect(afterPut.headers.get('x-gateway-cache')).toBe('MISS');
    expect(afterPut.headers.get('x-gateway-upstream')).toBe('redefined/new');

    // Deleted and created again with the old definition: the first definition's answer is gone too.
    expect((await api('/v1/pools/redefined', { method: 'DELETE', key })).status).toBe(204);
    await poolFor(key, 'redefined', [{ id: 'again', kind: 'builtin' }], { cache: { ttlSeconds: 600 } });
    const recreated = await api('/v1/chat/completions', { key, body });
    expect(recreated.headers.get('x-gateway-cache')).toBe('MISS');
    expect(recreated.headers.get('x-gateway-upstream')).toBe('redefined/again');
  });
});
