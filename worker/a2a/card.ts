import type { AgentConfig } from '../schemas/agent';

/** The A2A protocol version this gateway speaks, and the only one on its cards. */
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
export function agentCard(agent: CardSource, origin: string): Record<string, unknown> {
  const name = agent.name ?? agent.id;
  const description = agent.a2a?.description ?? `${name}, an agent served by edge-agent-gateway`;
  const skills = agent.a2a?.skills?.map((s) => ({ id: s.id, name: s.name, description: s.description, tags: s.tags, ...(s.examples && { examples: s.examples }) })) ?? [
    { id: 'default', name, description, tags: ['chat'] },
  ];
  return {
    name,
    description,
    supportedInterfaces: [{ url: `${origin}${a2aPath(agent.id)}`, protocolBinding: 'JSONRPC', protocolVersion: A2A_VERSION }],
    provider: { organization: 'edge-agent-gateway', url: origin },
    version: '1.0.0',
    capabilities: { streaming: true, pushNotifications: true, extendedAgentCard: false },
    securitySchemes: { bearer: { httpAuthSecurityScheme: { scheme: 'Bearer', description: 'a tenant API key (eag_…), as for the REST API' } } },
    securityRequirements: [{ schemes: { bearer: { list: [] } } }],
    defaultInputModes: ['text/plain', 'application/json'],
    defaultOutputModes: ['text/plain', 'application/json'],
    skills,
  };
}
