import path from 'node:path';
import { cloudflareTest, readD1Migrations } from '@cloudflare/vitest-pool-workers';
import { defineConfig } from 'vitest/config';

const migrations = await readD1Migrations(path.join(import.meta.dirname, 'migrations'));

/**
 * Unit tests of pure logic (parsing, arithmetic, choice), which touch no binding and no runtime
 * API that workerd and Node do differently (fetch, streams, crypto digests): they run in Node.
 * In workerd each test file starts its own runtime and loads the Worker's modules anew, about
 * 5 s of setup for tests that take milliseconds. A unit test of fetch, streams or crypto stays
 * in the workers project, which runs it in the runtime that serves the code.
 */
const NODE_UNIT_TESTS = [
  'a2a-large', 'abort', 'agent-transactions', 'balancer', 'builtin', 'card-limit', 'change-log', 'client-gone',
  'config-rpc', 'cursor', 'dev-vars', 'ids', 'json-limits', 'json-merge-patch', 'key-limiter-policy', 'mcp-guard',
  'outbound-guard', 'placement', 'router', 'sse-done', 'time', 'webhook-schedule', 'whole-number-setting',
].map((name) => `test/unit/${name}.test.ts`);

export default defineConfig({
  test: {
    projects: [
      {
        // Integration and unit tests inside workerd: real Durable Objects, D1 and KV.
        plugins: [
          cloudflareTest(({ inject }) => ({
            main: './worker/index.ts',
            wrangler: { configPath: './wrangler.toml' },
            miniflare: {
              bindings: {
                TEST_MIGRATIONS: migrations,
                ADMIN_TOKEN: 'test-admin-token-0123456789',
                ALLOW_PRIVATE_UPSTREAMS: 'true',
                ENABLE_CONFORMANCE_UPSTREAM: 'true',
                LOG_LEVEL: 'error',
                UPSTREAM_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'),
                MOCK_UPSTREAM_URL: inject('mockUpstreamUrl'),
              },
            },
          })),
        ],
        test: {
          name: 'workers',
          include: ['test/**/*.test.ts'],
          exclude: ['test/e2e/**', ...NODE_UNIT_TESTS],
          globalSetup: ['./test/support/global-setup.ts'],
          setupFiles: ['./test/support/apply-migrations.ts'],
          // A guard against a hang, not a clock: under CI's load (three files at a time on two cores)
          // a test of a few seconds alone has taken 18–21 s.
          testTimeout: 30_000,
          // Vitest runs one file at a time on a 2-core machine (its default is the cores less
          // one), while most of a file's time is waiting on workerd, timers and the mock
          // upstream: two at a time took the project from about 570 s to 375 s here, and with
          // 127 files three took it from 614 s to 520 s. Each file starts its own workerd and
          // loads the Worker's modules anew (about 4 s of setup a file); isolate: false would
          // share one, but this pool version stalls with it (it ran 9 files in 8 minutes).
          maxWorkers: 3,
        },
      },
      {
        // The workers project's maxWorkers: vitest runs projects side by side only when they agree on it.
        test: { name: 'unit', include: NODE_UNIT_TESTS, environment: 'node', maxWorkers: 3 },
      },
      {
        // End-to-end: the README's quickstart, driven over HTTP against `npm run dev`.
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.e2e.ts'],
          environment: 'node',
          // One dev server at a time, after the other projects' files (vitest runs a project of
          // one worker alone, at the end). Run beside them, the whole suite took as long (654 s
          // against 661 s: the two cores are busy either way), and a starved dev server closed a
          // connection mid-request. `npm run dev` makes .dev.vars whole or not at all regardless.
          fileParallelism: false,
          testTimeout: 180_000,
          hookTimeout: 180_000,
          // A poll waits on what the page shows after a real request to the dev server, which a
          // loaded machine can take seconds to answer: vitest's 1 s default was a clock, not a condition.
          expect: { poll: { timeout: 15_000 } },
        },
      },
    ],
  },
});
