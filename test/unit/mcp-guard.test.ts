import { describe, expect, it } from 'vitest';
import { mcpRequestProblem } from '../../worker/middleware/mcp-guard';

const request = (url: string, headers: Record<string, string> = {}) => new Request(url, { method: 'POST', headers });

describe('mcpRequestProblem: Origin', () => {
  const none = {};

  it('serves requests without Origin (MCP hosts, SDKs, curl)', () => {
    expect(mcpRequestProblem(none, request('https://gw.example/mcp'))).toBeNull();
  });

  it("serves the endpoint's own origin and refuses any other by default", () => {
    expect(mcpRequestProblem(none, request('https://gw.example/mcp', { origin: 'https://gw.example' }))).toBeNull();
    expect(mcpRequestProblem(none, request('https://gw.example/mcp', { origin: 'https://GW.example' }))).toBeNull();
    expect(mcpRequestProblem(none, request('https://gw.example/mcp', { origin: 'http://gw.example' }))).toMatch(/origin http:\/\/gw.example is not allowed/);
    expect(mcpRequestProblem(none, request('https://gw.example/mcp', { origin: 'https://gw.example.evil.test' }))).not.toBeNull();
    expect(mcpRequestProblem(none, request('https://gw.example/mcp', { origin: 'null' }))).not.toBeNull();
  });

  it('serves origins the operator lists in MCP_ALLOWED_ORIGINS, exactly', () => {
    const env = { MCP_ALLOWED_ORIGINS: ' https://app.example , https://Console.example:8443,' };
    expect(mcpRequestProblem(env, request('https://gw.example/mcp', { origin: 'https://app.example' }))).toBeNull();
    expect(mcpRequestProblem(env, request('https://gw.example/mcp', { origin: 'https://console.example:8443' }))).toBeNull();
    expect(mcpRequestProblem(env, request('https://gw.example/mcp', { origin: 'https://console.example' }))).not.toBeNull();
    expect(mcpRequestProblem(env, request('https://gw.example/mcp', { origin: 'https://sub.app.example' }))).not.toBeNull();
  });
});

describe('mcpRequestProblem: Host', () => {
  it('serves any Host when MCP_ALLOWED_HOSTS is unset or empty', () => {
    expect(mcpRequestProblem({}, request('https://rebound.evil.test/mcp'))).toBeNull();
    expect(mcpRequestProblem({ MCP_ALLOWED_HOSTS: ' , ' }, request('https://rebound.evil.test/mcp'))).toBeNull();
  });

  it('refuses a Host the operator did not list (DNS rebinding)', () => {
    const env = { MCP_ALLOWED_HOSTS: 'gw.example, localhost:8787' };
    expect(mcpRequestProblem(env, request('https://gw.example/mcp'))).toBeNull();
    expect(mcpRequestProblem(env, request('http://localhost:8787/mcp'))).toBeNull();
    expect(mcpRequestProblem(env, request('http://localhost:9999/mcp'))).toMatch(/host localhost:9999 is not allowed/);
    expect(mcpRequestProblem(env, request('https://rebound.evil.test/mcp'))).toMatch(/host rebound.evil.test is not allowed/);
  });

  it('checks Host before Origin', () => {
    const env = { MCP_ALLOWED_HOSTS: 'gw.example' };
    expect(mcpRequestProblem(env, request('https://other.example/mcp', { origin: 'https://other.example' }))).toMatch(/^host/);
  });
});
