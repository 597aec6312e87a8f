import { SELF } from 'cloudflare:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { BASE } from './api';

/**
 * An MCP client from the official SDK, talking to the Worker with the tenant's key. It lists
 * the tools first, so it checks every structured result against the tool's output schema.
 */
export async function connect(key: string): Promise<Client> {
  const client = new Client({ name: 'gateway-test', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(`${BASE}/mcp`), {
    fetch: (url, init) => {
      const headers = new Headers(init?.headers);
      headers.set('authorization', `Bearer ${key}`);
      return SELF.fetch(String(url), { ...init, headers });
    },
  });
  await client.connect(transport);
  await client.listTools();
  return client;
}
