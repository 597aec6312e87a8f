import { describe, expect, it } from 'vitest';
import { ADMIN, api, chatTarget, eventually, mockUrl, newAgent } from './support/api';
import { limitedKey } from './support/limits';
import { estimateExecutionTokens } from '../worker/limits/usage';

/**
 * A key's token budget settles with what a chat used. Answers the gateway writes itself (a
 * builtin pool target, a chat through an agent) carry an OpenAI `usage` too, so they are not
 * charged the whole reservation (256 + the prompt for a chat without max_tokens).
 */

const BUDGET = { tokens: 10_000, period: 'day' } as const;
/** What a chat without max_tokens reserves: 256 and the prompt at ~4 characters a token. */
const reservation = (prompt: string) => 256 + Math.ceil(prompt.length / 4);
const estimate = (prompt: string, answer: string) => {
  const promptTokens = Math.ceil(prompt.length / 4);
  const completion = Math.ceil(answer.length / 4);
  return { prompt_tokens: promptTokens, completion_tokens: completion, total_tokens: promptTokens + completion };
};

const chat = (key: string, model: string, content: string, extra: Record<string, unknown> = {}) =>
  api('/v1/chat/completions', { key, body: { model, messages: [{ role: 'user', content }], ...extra } });

/** The key's budget once no request is in flight (every lease settled). */
async function settledTokens(key: string): Promise<number> {
  const usage = await eventually(async () => {
    const res = await api('/v1/usage', { key });
    return res.body.budget.reservedTokens === 0 && res.body;
  });
  return usage.budget.tokens;
}

/** The JSON events of an OpenAI stream (without the final [DONE]). */
function events(body: unknown): Record<string, any>[] {
  const text = String(body);
  expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
  return text
    .split('\n\n')
    .map((event) => event.replace(/^data: /, '').trim())
    .filter((data) => data !== '' && data !== '[DONE]')
    .map((data) => JSON.parse(data) as Record<string, any>);
}

const streamedContent = (chunks: Record<string, any>[]) => chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');

async function builtinPool(adminKey: string): Promise<string> {
  const res = await api('/v1/pools/offline', { method: 'PUT', key: adminKey, body: { targets: [{ id: 'local', kind: 'builtin' }] } });
  expect(res.status).toBe(201);
  return 'offline';
}

describe('token budgets and the gateway\'s own answers', () => {
  it('a builtin pool target reports an estimated usage, and the budget settles with it', async () => {
    const { key, otherKey } = await limitedKey({ budget: BUDGET });
    const model = await builtinPool(otherKey);
    const prompt = 'How long does shipping take?';
    const res = await chat(key, model, prompt);
    expect(res.status).toBe(200);
    const answer: string = res.body.choices[0].message.content;
    expect(res.body.usage).toEqual(estimate(prompt, answer));
    const used = await settledTokens(key);
    expect(used).toBe(res.body.usage.total_tokens);
    expect(used).toBeLessThan(reservation(prompt));
  });

  it('a builtin stream settles with its estimate, and sends the usage chunk only when asked', async () => {
    const { key, otherKey } = await limitedKey({ budget: BUDGET });
    const model = await builtinPool(otherKey);

    const plain = await chat(key, model, 'hi', { stream: true });
    expect(plain.status).toBe(200);
    const plainChunks = events(plain.body);
    expect(plainChunks.some((c) => 'usage' in c)).toBe(false);
    const expected = estimate('hi', streamedContent(plainChunks));
    expect(await settledTokens(key)).toBe(expected.total_tokens);

    const asked = await chat(key, model, 'hi', { stream: true, stream_options: { include_usage: true } });
    expect(asked.status).toBe(200);
    const chunks = events(asked.body);
    const last = chunks.at(-1);
    expect(last).toMatchObject({ object: 'chat.completion.chunk', choices: [], usage: expected });
    for (const c of chunks.slice(0, -1)) expect(c.usage).toBeNull();
    expect(await settledTokens(key)).toBe(2 * expected.total_tokens);
  });

  it('a chat through a builtin agent reports an estimated usage and settles with it, streamed or not', async () => {
    const { key, otherKey } = await limitedKey({ budget: BUDGET });
    const agent = await newAgent(otherKey);
    const res = await chat(key, `agent:${agent}`, 'Where is my order?');
    expect(res.status).toBe(200);
    // What its execution is charged, as a REST one's: its input as stored (JSON) and its answer.
    const expected = estimate(JSON.stringify({ message: 'Where is my order?' }), res.body.choices[0].message.content);
    expect(res.body.usage).toEqual(expected);
    expect(await settledTokens(key)).toBe(expected.total_tokens);

    const streamed = await chat(key, `agent:${agent}`, 'Where is my order?', { stream: true, stream_options: { include_usage: true } });
    expect(events(streamed.body).at(-1)?.usage).toEqual(expected);
    expect(await settledTokens(key)).toBe(2 * expected.total_tokens);
  });

  it('a chat through an agent settles with the usage its openai-chat upstream reported', async () => {
    const { key, otherKey } = await limitedKey({ budget: BUDGET });
    const agent = await newAgent(otherKey, { upstream: { kind: 'openai-chat', baseUrl: mockUrl('/v1'), model: 'mock-1' } });
    const res = await chat(key, `agent:${agent}`, 'hi');
    expect(res.status).toBe(200);
    // The mock reports 10 prompt and 5 completion tokens.
    expect(res.body.usage).toEqual({ prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 });
    expect(await settledTokens(key)).toBe(15);
    const execution = await api(`/v1/agents/${agent}/executions/${res.headers.get('x-gateway-execution')}`, { key: otherKey });
    expect(execution.body.output.usage).toEqual({ prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 });
  });

  it('a relayed stream settles with the usage chunk of a request that asked for it, relayed as it came', async () => {
    const { key } = await limitedKey({ budget: BUDGET });
    // Reserved: max_tokens 10 + "hi" = 11; the mock reports 15 used.
    const asked = await chat(key, 'chat', 'hi', { stream: true, max_tokens: 10, stream_options: { include_usage: true } });
    expect(asked.status).toBe(200);
    const chunks = events(asked.body);
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 } });
    for (const c of chunks.slice(0, -1)) expect(c.usage).toBeNull();
    expect(await settledTokens(key)).toBe(15);
  });
});

/** The chunks of a stream whose client did not ask for usage: every one has choices, and [DONE] ends it. */
function chunksWithChoices(body: unknown): Record<string, any>[] {
  const chunks = events(body);
  expect(chunks.length).toBeGreaterThan(0);
  for (const c of chunks) expect(c.choices?.length, JSON.stringify(c)).toBeGreaterThan(0);
  return chunks;
}

describe('a relayed stream whose client did not ask for its usage', () => {
  it("settles with the target's usage, asked for on the client's behalf and kept from the client", async () => {
    const { key } = await limitedKey({ budget: BUDGET });
    // Reserved 256 + 1 for "hi"; the mock reports 15 used.
    const res = await chat(key, 'chat', 'hi', { stream: true });
    expect(res.status).toBe(200);
    expect(streamedContent(chunksWithChoices(res.body))).toBe('mock reply to: hi');
    expect(await settledTokens(key)).toBe(15);
    expect(15).toBeLessThan(reservation('hi'));
  });

  it("asks with the client's other stream_options kept, and only for a key with a token budget", async () => {
    const { key, otherKey } = await limitedKey({ budget: BUDGET }, 'echoStreamOptions=true');
    const budgeted = await chat(key, 'chat', 'hi', { stream: true, stream_options: { include_obfuscation: false } });
    expect(streamedContent(chunksWithChoices(budgeted.body))).toBe('mock reply to: hi stream_options={"include_obfuscation":false,"include_usage":true}');
    expect(await settledTokens(key)).toBe(15);

    const unlimited = await chat(otherKey, 'chat', 'hi', { stream: true });
    expect(streamedContent(chunksWithChoices(unlimited.body))).toBe('mock reply to: hi stream_options=null');
  });

  it('asks for it when the client sent stream_options: null, which OpenAI takes as no value, and settles with what the target reported', async () => {
    const { key } = await limitedKey({ budget: BUDGET }, 'echoStreamOptions=true');
    const res = await chat(key, 'chat', 'hi', { stream: true, stream_options: null });
    expect(res.status).toBe(200);
    // It used to be sent on as null: no usage asked for, and the budget charged an estimate.
    expect(streamedContent(chunksWithChoices(res.body))).toBe('mock reply to: hi stream_options={"include_usage":true}');
    expect(events(res.body).some((event) => event.usage)).toBe(false);
    expect(await settledTokens(key)).toBe(15);
  });

  it('settles with an estimate of what it relayed when the target ignores stream_options, the stream intact', async () => {
    const { key } = await limitedKey({ budget: BUDGET }, 'ignoreStreamOptions=true');
    const prompt = 'Which of our plans includes priority support?';
    const res = await chat(key, 'chat', prompt, { stream: true });
    expect(res.status).toBe(200);
    const content = streamedContent(chunksWithChoices(res.body));
    expect(content).toBe(`mock reply to: ${prompt}`);
    // The prompt as the reservation counts it, and the N characters streamed at ceil(N/4).
    const used = await settledTokens(key);
    expect(used).toBe(Math.ceil(prompt.length / 4) + Math.ceil(content.length / 4));
    expect(used).toBe(estimate(prompt, content).total_tokens);
    expect(used).toBeLessThan(reservation(prompt) / 5);
  });

  it('counts a stream without usage whose events arrive split across network chunks, multi-byte characters included', async () => {
    const { key } = await limitedKey({ budget: BUDGET }, 'ignoreStreamOptions=true,pieceBytes=5');
    const prompt = 'Grüße aus Zürich 👋 — wie lange dauert der Versand?';
    const res = await chat(key, 'chat', prompt, { stream: true });
    expect(res.status).toBe(200);
    const content = streamedContent(chunksWithChoices(res.body));
    expect(content).toBe(`mock reply to: ${prompt}`);
    expect(await settledTokens(key)).toBe(estimate(prompt, content).total_tokens);
  });

  it('never settles a stream without usage above its reservation', async () => {
    const { key } = await limitedKey({ budget: BUDGET }, 'ignoreStreamOptions=true');
    // max_tokens 2 + "hi": 3 reserved; the mock streams 17 characters (5 tokens) regardless.
    const res = await chat(key, 'chat', 'hi', { stream: true, max_tokens: 2 });
    expect(streamedContent(chunksWithChoices(res.body))).toBe('mock reply to: hi');
    expect(await settledTokens(key)).toBe(3);
  });

  it('asks a target that refuses stream_options again without them, and settles with an estimate of what it relayed', async () => {
    const { key } = await limitedKey({ budget: BUDGET }, 'rejectStreamOptions=true');
    const res = await chat(key, 'chat', 'hi', { stream: true });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-gateway-attempts')).toBe('1');
    expect(streamedContent(chunksWithChoices(res.body))).toBe('mock reply to: hi');
    expect(await settledTokens(key)).toBe(estimate('hi', 'mock reply to: hi').total_tokens);
  });

  it('still ends a broken stream with an error event, charged an estimate of what it relayed', async () => {
    const { key } = await limitedKey({ budget: BUDGET }, 'cutAfter=2');
    const res = await chat(key, 'chat', 'hi', { stream: true });
    expect(res.status).toBe(200);
    const text = String(res.body);
    expect(text).not.toContain('[DONE]');
    const payloads = text.trimEnd().split('\n\n').map((event) => JSON.parse(event.replace(/^data: /, '')));
    expect(payloads.at(-1).error).toMatchObject({ code: 'stream_interrupted' });
    const relayed = streamedContent(payloads.slice(0, -1));
    expect(relayed).toBe('mock reply');
    expect(await settledTokens(key)).toBe(estimate('hi', relayed).total_tokens);
  });

  it('keeps the usage chunk from the client when it arrives split across network chunks', async () => {
    const { key } = await limitedKey({ budget: BUDGET }, 'pieceBytes=7');
    const res = await chat(key, 'chat', 'hi', { stream: true });
    expect(res.status).toBe(200);
    expect(streamedContent(chunksWithChoices(res.body))).toBe('mock reply to: hi');
    expect(await settledTokens(key)).toBe(15);
  });
});

describe('a completion whose target reports no usage', () => {
  for (const passThrough of [false, true]) {
    it(`settles with an estimate of the answer it relayed${passThrough ? ' (pool passes answers through)' : ''}`, async () => {
      const { key, otherKey, tag } = await limitedKey({ budget: BUDGET });
      const pool = await api('/v1/pools/quiet', { method: 'PUT', key: otherKey, body: { targets: [chatTarget(`${tag}-quiet`, 'omitUsage=true')], passThrough } });
      expect(pool.status).toBe(201);
      const prompt = 'Which of our plans includes priority support?';
      const res = await chat(key, 'quiet', prompt);
      expect(res.status).toBe(200);
      expect(res.body.usage).toBeUndefined();
      const answer: string = res.body.choices[0].message.content;
      expect(answer).toBe(`mock reply to: ${prompt}`);
      const used = await settledTokens(key);
      expect(used).toBe(estimate(prompt, answer).total_tokens);
      expect(used).toBeLessThan(reservation(prompt) / 5);
    });
  }

  it('still settles with the usage a target reports', async () => {
    const { key } = await limitedKey({ budget: BUDGET });
    const res = await chat(key, 'chat', 'Which of our plans includes priority support?');
    expect(res.body.usage.total_tokens).toBe(15);
    expect(await settledTokens(key)).toBe(15);
  });
});

describe("a budget's period changed and changed back", () => {
  // Each period's count is its own row in the key's limiter. Starting a new row used to drop
  // every other one, the current day's or month's too: a day budget switched to a month and
  // back (or the reverse) started its still-running period again from zero.
  it('keeps what the current day and month have used', async () => {
    const { key, keyId, otherKey } = await limitedKey({ budget: { requests: 5, period: 'day' } });
    const agent = await newAgent(otherKey);
    const run = () => api(`/v1/agents/${agent}/executions`, { key, body: { intent: 'echo' } });
    const period = async (name: 'day' | 'month') =>
      expect((await api(`/v1/admin/keys/${keyId}`, { method: 'PATCH', key: ADMIN(), body: { limits: { budget: { period: name } } } })).status).toBe(200);
    for (let i = 0; i < 2; i++) expect((await run()).status).toBe(200);
    await period('month');
    expect((await run()).status).toBe(200);
    await period('day');
    expect((await api('/v1/usage', { key })).body.budget).toMatchObject({ period: 'day', requests: 2 });
    await period('month');
    expect((await api('/v1/usage', { key })).body.budget).toMatchObject({ period: 'month', requests: 1 });
  });
});

describe('a chat that asks for several choices (n)', () => {
  // Each choice may use the completion cap: reserving it once let one chat of n choices use n
  // times what the budget had room for.
  it('reserves the completion cap once per choice: a stated cap that does not fit n times is refused', async () => {
    const { key } = await limitedKey({ budget: { tokens: 100, period: 'day' } });
    const refused = await chat(key, 'chat', 'hi', { n: 4, max_tokens: 50 });
    expect(refused.status).toBe(429);
    expect(refused.body.error).toMatchObject({ code: 'budget_exhausted', details: { limit: 'budget.tokens' } });
    expect((await chat(key, 'chat', 'hi', { n: 4, max_tokens: 20 })).status).toBe(200);
  });

  it('splits a shrunk reservation between the choices when the chat states no cap', async () => {
    // 9 tokens free, "hi" counts 1: each of 4 choices may use 2, so the chat is sent with max_tokens 2.
    const { key } = await limitedKey({ budget: { tokens: 9, period: 'day' } });
    const res = await chat(key, 'chat', 'hi', { n: 4 });
    expect(res.status).toBe(200);
    expect(res.body.usage.completion_tokens).toBe(2);
  });
});

describe('a chat through an agent reserves what its run sends, as an execution of the same turn', () => {
  // The edge counted only the chat's body; the agent's run also sends its instructions, context
  // and history. Such a chat used to run whatever the budget had left, and concurrent ones past it.
  const agentChat = (key: string, agent: string, content: string, how: { header?: boolean; stream?: boolean; idempotencyKey?: string } = {}) =>
    api('/v1/chat/completions', {
      key,
      headers: { ...(how.header && { 'x-agent-id': agent }), ...(how.idempotencyKey !== undefined && { 'idempotency-key': how.idempotencyKey }) },
      body: { model: how.header ? 'ignored' : `agent:${agent}`, messages: [{ role: 'user', content }], ...(how.stream && { stream: true }) },
    });
  const chatUpstream = (faults = 'ok') => ({ kind: 'openai-chat', baseUrl: mockUrl(`/t/agent-chat-tokens/${faults}/v1`), model: 'mock-1' });
  /** ~1,000 tokens of instructions every run of the agent sends. */
  const LONG_INSTRUCTIONS = 'Be helpful. '.repeat(340);

  it("refuses one whose agent's instructions or context the budget cannot cover with 429 budget_exhausted, starting nothing", async () => {
    const { key, otherKey } = await limitedKey({ budget: { tokens: 1_000, period: 'day' } });
    const instructed = await newAgent(otherKey, { upstream: chatUpstream(), instructions: LONG_INSTRUCTIONS });
    const http = await newAgent(otherKey, { upstream: { kind: 'agent-http', url: mockUrl() } });
    expect((await api(`/v1/agents/${http}/context`, { method: 'PATCH', key: otherKey, body: { notes: 'n'.repeat(4_000) } })).status).toBe(200);
    for (const agent of [instructed, http]) {
      for (const how of [{}, { header: true }, { stream: true }]) {
        const res = await agentChat(key, agent, 'Where is my order?', how);
        expect(res.status, `${agent} ${JSON.stringify(how)}`).toBe(429);
        expect(res.body.error).toMatchObject({ code: 'budget_exhausted', details: { limit: 'budget.tokens' } });
        expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
        expect(res.headers.get('ratelimit-limit')).toBe('1000');
      }
      // As a REST execution of the same turn is.
      expect((await api(`/v1/agents/${agent}/executions`, { key, body: { intent: 'chat', input: { message: 'Where is my order?' } } })).status).toBe(429);
      expect((await api(`/v1/agents/${agent}/status`, { key: otherKey })).body.lastExecution).toBeNull();
    }
    expect((await api('/v1/usage', { key })).body.budget).toMatchObject({ tokens: 0, requests: 0, reservedTokens: 0 });
    // The same chat through an agent that sends little runs.
    expect((await agentChat(key, await newAgent(otherKey, { upstream: chatUpstream() }), 'Where is my order?')).status).toBe(200);
  });

  it('refuses a turn whose stored history the budget cannot cover', async () => {
    const { key, otherKey } = await limitedKey({ budget: { tokens: 1_500, period: 'day' } });
    const agent = await newAgent(otherKey, { upstream: chatUpstream() });
    // ~1,000 tokens: it fits, and joins the history with the mock's answer, which echoes it.
    expect((await agentChat(key, agent, `Where is my order? ${'x'.repeat(4_000)}`)).status).toBe(200);
    const refused = await agentChat(key, agent, 'hi');
    expect(refused.status).toBe(429);
    expect(refused.body.error).toMatchObject({ code: 'budget_exhausted', details: { limit: 'budget.tokens' } });
    expect((await api('/v1/usage', { key })).body.budget).toMatchObject({ tokens: 15, requests: 1, reservedTokens: 0 });
  });

  it('lets concurrent chats through large agents take the budget only once', async () => {
    // Each run sends ~1,300 tokens and waits a moment upstream: one fits a budget of 2,000, two do not.
    const { key, otherKey } = await limitedKey({ budget: { tokens: 2_000, period: 'day' } });
    const agents = await Promise.all([0, 1].map(() => newAgent(otherKey, { upstream: chatUpstream('delayMs=1500'), instructions: 'Be helpful. '.repeat(350) })));
    const results = await Promise.all(agents.map((agent) => agentChat(key, agent, 'Where is my order?')));
    expect(results.map((r) => r.status).sort()).toEqual([200, 429]);
    expect(results.find((r) => r.status === 429)!.body.error).toMatchObject({ code: 'budget_exhausted', details: { limit: 'budget.tokens' } });
  });

  it('is counted once, by its agent, streamed or not', async () => {
    const { key, otherKey } = await limitedKey({ budget: BUDGET });
    const agent = await newAgent(otherKey, { upstream: chatUpstream(), instructions: LONG_INSTRUCTIONS });
    const res = await agentChat(key, agent, 'hi', { header: true });
    expect(res.status).toBe(200);
    expect(res.body.usage.total_tokens).toBe(15);
    expect(await settledTokens(key)).toBe(15);
    const streamed = await agentChat(key, agent, 'hi', { stream: true });
    expect(streamed.status).toBe(200);
    expect(streamedContent(events(streamed.body))).toBe('mock reply to: hi');
    expect(await settledTokens(key)).toBe(30);
    expect((await api('/v1/usage', { key })).body.budget).toMatchObject({ requests: 2, reservedTokens: 0 });
  });

  it("still answers a keyed turn's replay once the budget cannot cover a new turn", async () => {
    const long = `Where is my order? ${'x'.repeat(4_000)}`;
    const { key, keyId, otherKey } = await limitedKey({ budget: BUDGET });
    const agent = await newAgent(otherKey, { upstream: chatUpstream() });
    // The first turn fits; once its 15 tokens are used, neither its request nor its history does.
    const reserved = estimateExecutionTokens(JSON.stringify({ model: `agent:${agent}`, messages: [{ role: 'user', content: long }] })).tokens;
    expect((await api(`/v1/admin/keys/${keyId}`, { method: 'PATCH', key: ADMIN(), body: { limits: { budget: { tokens: reserved + 10 } } } })).status).toBe(200);
    const first = await agentChat(key, agent, long, { idempotencyKey: 'turn-1' });
    expect(first.status).toBe(200);
    for (const stream of [false, true]) {
      const replay = await agentChat(key, agent, long, { idempotencyKey: 'turn-1', stream });
      expect(replay.status).toBe(200);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(replay.headers.get('x-gateway-execution')).toBe(first.headers.get('x-gateway-execution'));
    }
    for (const content of [long, 'hi']) {
      const refused = await agentChat(key, agent, content, { idempotencyKey: `turn-${content.length}` });
      expect(refused.status).toBe(429);
      expect(refused.body.error).toMatchObject({ code: 'budget_exhausted', details: { limit: 'budget.tokens' } });
    }
    expect(await settledTokens(key)).toBe(15);
  });
});
