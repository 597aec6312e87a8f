import type { UpstreamConfig } from '../schemas/agent';
import { agentHttpUpstream } from './agent-http';
import { builtinUpstream } from './builtin';
import { openAIChatUpstream } from './openai-chat';
import { outboundUrlProblem } from './outbound-guard';
import { UpstreamError, type Upstream } from './types';

/** Turns an agent's upstream config into the thing that calls it. Pools replace this later. */
export function resolveUpstream(config: UpstreamConfig, allowPrivate: boolean): Upstream {
  switch (config.kind) {
    case 'builtin':
      return builtinUpstream;
    case 'agent-http':
      return guarded(agentHttpUpstream(config.url, config.timeoutMs), config.url, allowPrivate);
    case 'openai-chat':
      return guarded(openAIChatUpstream(config.baseUrl, config.model, config.apiKey, config.timeoutMs), config.baseUrl, allowPrivate);
  }
}

/** Re-checks the URL before every call: the guard's setting may have changed since it was stored. */
function guarded(upstream: Upstream, url: string, allowPrivate: boolean): Upstream {
  return {
    ...upstream,
    call(request, options) {
      const problem = outboundUrlProblem(url, allowPrivate);
      if (problem) return Promise.reject(new UpstreamError('refused', `upstream URL refused: ${problem}`, false));
      return upstream.call(request, options);
    },
  };
}

/** Masks credentials for every view of a config that leaves the agent (API, D1 snapshot). */
export function maskUpstream(config: UpstreamConfig): UpstreamConfig {
  if (config.kind !== 'openai-chat' || config.apiKey === undefined) return config;
  return { ...config, apiKey: `…${config.apiKey.slice(-4)}` };
}
