import { describe, expect, it } from 'vitest';
import { whenClientGone } from '../../worker/limits/client-gone';

/** A waitUntil that records what it was given. */
function held() {
  const promises: Promise<unknown>[] = [];
  return { promises, waitUntil: (p: Promise<unknown>) => void promises.push(p) };
}

describe('whenClientGone', () => {
  it('calls gone once when the client leaves, and holds the context until it has finished', async () => {
    const client = new AbortController();
    const { promises, waitUntil } = held();
    let calls = 0;
    let finish = () => {};
    whenClientGone(client.signal, () => { calls++; return new Promise<void>((resolve) => (finish = resolve)); }, waitUntil);
    expect(promises).toHaveLength(1);
    client.abort();
    client.abort();
    expect(calls).toBe(1);
    let settled = false;
    void promises[0]?.then(() => (settled = true));
    await Promise.resolve();
    expect(settled).toBe(false);
    finish();
    await promises[0];
    expect(settled).toBe(true);
  });

  it('never calls gone once unlinked, and lets the context go', async () => {
    const client = new AbortController();
    const { promises, waitUntil } = held();
    let calls = 0;
    whenClientGone(client.signal, async () => void calls++, waitUntil)();
    client.abort();
    await promises[0];
    expect(calls).toBe(0);
  });

  it('calls gone at once for a client already gone', async () => {
    const client = new AbortController();
    client.abort();
    const { promises, waitUntil } = held();
    let calls = 0;
    whenClientGone(client.signal, async () => void calls++, waitUntil);
    await Promise.all(promises);
    expect(calls).toBe(1);
  });
});
