export interface MockUpstream {
  url: string;
  requests: Map<string, object[]>;
  close(): Promise<void>;
}
export function startMockUpstream(options?: { port?: number; host?: string; keepBodies?: boolean }): Promise<MockUpstream>;
