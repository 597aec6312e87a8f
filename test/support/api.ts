import { env, SELF } from 'cloudflare:test';

export const BASE = 'https://gateway.test';

export interface ApiResponse<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

/** Calls the Worker like a client would, JSON in and out. */
export async function api<T = any>(
  path: string,
  init: { method?: string; key?: string; body?: unknown; headers?: Record<string, string>; rawBody?: BodyInit; cf?: Record<string, unknown> } = {},
): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = { ...init.headers };
  if (init.key) headers.authorization = `Bearer ${init.key}`;
  let body: BodyInit | undefined = init.rawBody;
  if (init.body !== undefined) {
    body = JSON.stringify(init.body);
    headers['content-type'] ??= 'application/json';
  }
  const response = await SELF.fetch(`${BASE}${path}`, {
    method: init.method ?? (body === undefined ? 'GET' : 'POST'),
    headers,
    body,
    ...(init.cf ? { cf: init.cf } : {}),
  });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON: keep the text */
  }
  return { status: response.status, headers: response.headers, body: parsed as T };
}

export const ADMIN = (): string => env.ADMIN_TOKEN;

let tenantSeq = 0;

/** A fresh tenant and an API key for it, made through the admin API. */
export async function newTenant(): Promise<{ tenantId: string; key: string; keyId: string }> {
  const tenant = await api<{ id: string }>('/v1/admin/tenants', { key: ADMIN(), body: { name: `tenant ${++tenantSeq}` } });
  if (tenant.status !== 201) throw new Error(`tenant creation failed: ${tenant.status} ${JSON.stringify(tenant.body)}`);
  const key = await api<{ key: string; id: string }>(`/v1/admin/tenants/${tenant.body.id}/keys`, { key: ADMIN(), body: {} });
  if (key.status !== 201) throw new Error(`key creation failed: ${key.status}`);
  return { tenantId: tenant.body.id, key: key.body.key, keyId: key.body.id };
}

let agentSeq = 0;
export const uniqueId = (prefix = 'agent'): string => `${prefix}-${Date.now().toString(36)}-${++agentSeq}`;

/** Creates an agent for `key` and returns its id. */
export async function newAgent(key: string, body: Record<string, unknown> = {}): Promise<string> {
  const id = (body.id as string | undefined) ?? uniqueId();
  const res = await api('/v1/agents', { key, body: { id, ...body } });
  if (res.status !== 201) throw new Error(`agent creation failed: ${res.status} ${JSON.stringify(res.body)}`);
  return id;
}

export const mockUrl = (path = '/agent'): string => `${env.MOCK_UPSTREAM_URL}${path}`;

/** An openai-chat pool target on the mock upstream, named `id`, with faults in its path (`ok` for none). */
export const chatTarget = (id: string, faults = 'ok', extra: Record<string, unknown> = {}) => ({
  id,
  kind: 'openai-chat',
  baseUrl: `${env.MOCK_UPSTREAM_URL}/t/${id}/${encodeURIComponent(faults)}/v1`,
  model: 'mock-model',
  ...extra,
});

/** Polls `fn` until it returns a truthy value or the timeout passes. */
export async function eventually<T>(fn: () => Promise<T | undefined | null | false>, timeoutMs = 10_000, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
