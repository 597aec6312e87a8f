import type { AgentConfig } from '../schemas/agent';
import type { A2AVersion } from './rpc-error';

/** The A2A protocol version of the cards' interface (a v0.3 client's card also names 0.3.0 at its top level). */
export const A2A_VERSION = '1.0';

/** Where an agent's A2A endpoint lives, relative to the gateway's origin. */
export const a2aPath = (agentId: string): string => `/a2a/${agentId}/`;

type CardSource = Pick<AgentConfig, 'id' | 'name' | 'a2a'>;

/**
 * The agent card (A2A v1.0 JSON) of an agent: name and description from its config, one
 * JSON-RPC 1.0 interface, bearer auth (the tenant API key), and its skills, or one derived
 * skill when the config names none. Instructions are never shown: they are the agent's
 * prompt, not its description.
 */
export function agentCard(agent: CardSource, origin: string, version: A2AVersion = '1.0'): Record<string, unknown> {
  const name = agent.name ?? agent.id;
  const description = agent.a2a?.description ?? `${name}, an agent served by edge-agent-gateway`;
  const skills = agent.a2a?.skills?.map((s) => ({ id: s.id, name: s.name, description: s.description, tags: s.tags, ...(s.examples && { examples: s.examples }) })) ?? [
    { id: 'default', name, description, tags: ['chat'] },
  ];
  const url = `${origin}${a2aPath(agent.id)}`;
  const bearer = { scheme: 'Bearer', description: 'a tenant API key (eag_…), as for the REST API' };
  const card = {
    name,
    description,
    supportedInterfaces: [{ url, protocolBinding: 'JSONRPC', protocolVersion: A2A_VERSION }],
    provider: { organization: 'edge-agent-gateway', url: origin },
    version: '1.0.0',
    capabilities: { streaming: true, pushNotifications: true, extendedAgentCard: false },
    securitySchemes: { bearer: { httpAuthSecurityScheme: bearer } },
    securityRequirements: [{ schemes: { bearer: { list: [] } } }],
    defaultInputModes: ['text/plain', 'application/json'],
    defaultOutputModes: ['text/plain', 'application/json'],
    skills,
  };
  return version === '0.3' ? { ...card, ...legacyFields(url, bearer) } : card;
}

/**
 * What a v0.3 client reads from a card, added to the v1.0 card for a request without an
 * A2A-Version (0.3 by the spec's rule; v0.3 clients send none, v1.0 clients send 1.0): the
 * endpoint (`url`, which v1.0 moved into `supportedInterfaces`), its transport and version,
 * and the auth in v0.3's shape (`security`; a scheme's `type`, kept beside v1.0's
 * `httpAuthSecurityScheme` so that either reader finds its own). Without them a v0.3 client
 * could not find the endpoint that serves its method names. The SDK's own v0.3 card router
 * answers such requests with a superset card the same way.
 */
function legacyFields(url: string, bearer: { scheme: string; description: string }): Record<string, unknown> {
  return {
    url,
    preferredTransport: 'JSONRPC',
    protocolVersion: '0.3.0',
    supportsAuthenticatedExtendedCard: false,
    securitySchemes: { bearer: { type: 'http', ...bearer, httpAuthSecurityScheme: bearer } },
    security: [{ bearer: [] }],
  };
}
