import { describe, expect, it } from 'vitest';
import { abortWith } from '../../worker/lib/abort';

describe('abortWith', () => {
  it('aborts the attempt with the parent\'s reason while linked', () => {
    const parent = new AbortController();
    const attempt = new AbortController();
    abortWith(parent.signal, attempt);
    const reason = new Error('client went away');
    parent.abort(reason);
    expect(attempt.signal.aborted).toBe(true);
    expect(attempt.signal.reason).toBe(reason);
  });

  it('leaves the attempt alone once unlinked', () => {
    const parent = new AbortController();
    const attempt = new AbortController();
    abortWith(parent.signal, attempt)();
    parent.abort();
    expect(attempt.signal.aborted).toBe(false);
  });

  it('aborts at once when the parent already has', () => {
    const parent = new AbortController();
    parent.abort('gone');
    const attempt = new AbortController();
    abortWith(parent.signal, attempt);
    expect(attempt.signal.reason).toBe('gone');
  });

  it('does not abort the parent when the attempt aborts (its own timeout)', () => {
    const parent = new AbortController();
    const attempt = new AbortController();
    abortWith(parent.signal, attempt);
    attempt.abort();
    expect(parent.signal.aborted).toBe(false);
  });
});
