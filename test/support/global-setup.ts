import type { TestProject } from 'vitest/node';
import { startMockUpstream } from './mock-upstream.mjs';

/** Starts the fault-injecting mock upstream in Node for the whole run. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const upstream = await startMockUpstream();
  project.provide('mockUpstreamUrl', upstream.url);
  return () => upstream.close();
}
