import { describe, expect, it } from 'vitest';
import { api, mockUrl, newAgent, newTenant } from './support/api';

/**
 * An upstream reply is read up to 4 MiB and no further: read whole, a reply of any size was
 * buffered in the agent's object before its output was found too large, and one large enough
 * (150 MB) took the object past its memory limit.
 */
describe('an upstream reply over 4 MiB', () => {
  for (const [how, option] of [['with a Content-Length', 'outputBytes'], ['streamed without one', 'chunkedOutputBytes'], ['gzipped, its Content-Length the compressed size', 'gzipOutputBytes']] as const) {
    it(`fails the execution unread beyond the limit, not retried (${how})`, async () => {
      const { key } = await newTenant();
      const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl(`/agent?${option}=${6 * 1024 * 1024}`) } });
      const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'big' } });
      expect(res.status).toBe(502);
      expect(res.body.error.details.execution).toMatchObject({ status: 'failed', attempts: 1, error: { message: expect.stringContaining(`upstream reply exceeds ${4 * 1024 * 1024} bytes`) } });
      expect((await api(`/v1/agents/${id}/status`, { key })).body).toMatchObject({ running: 0, queued: 0 });
    });
  }

  it('leaves a reply within the limit to the output check (over 1 MiB of output fails as before)', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl(`/agent?chunkedOutputBytes=${2 * 1024 * 1024}`) } });
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'big' } });
    expect(res.status).toBe(502);
    expect(res.body.error.details.execution.error).toMatchObject({ code: 'output_too_large' });
  });
});
