import { z } from '@hono/zod-openapi';
import { UpstreamCredential } from './credential';
import { DisplayName } from './display-name';
import { AgentId, ErrorBody, HttpUrl, Metadata, boundedJson } from './common';

/** Durable Object location hints (best effort, honoured when an object is first created). */
export const Region = z.enum(['wnam', 'enam', 'sam', 'weur', 'eeur', 'apac', 'oc', 'afr', 'me']);
export type Region = z.infer<typeof Region>;

export const Jurisdiction = z.enum(['eu']);
export type Jurisdiction = z.infer<typeof Jurisdiction>;

const TimeoutMs = z.number().int().min(100).max(300_000);

export const BuiltinUpstream = z.object({
  kind: z.literal('builtin'),
  mode: z.enum(['faq', 'a2a-conformance']).optional().openapi({
    description: '"faq" (default): the offline customer-service responder; "a2a-conformance": the A2A conformance suite\'s scripted behaviours, allowed only when the operator sets ENABLE_CONFORMANCE_UPSTREAM="true"',
  }),
}).strict();

export const AgentHttpUpstream = z.object({
  kind: z.literal('agent-http'),
  url: HttpUrl,
  timeoutMs: TimeoutMs.optional(),
}).strict();

export const OpenAIChatUpstream = z.object({
  kind: z.literal('openai-chat'),
  baseUrl: HttpUrl,
  model: z.string().min(1).max(200),
  apiKey: UpstreamCredential.optional().openapi({
    description: 'the upstream credential, shown only as "…last4" (a bare "…" when shorter than 12 characters); sending that masked form back (or "...last4" / "...", its ASCII spelling) with the same baseUrl keeps the stored one, and every other masked value is refused',
  }),
  timeoutMs: TimeoutMs.optional(),
}).strict();

export const PoolUpstream = z.object({
  kind: z.literal('pool'),
  pool: z.string().regex(/^[a-zA-Z0-9_.-]{1,64}$/).openapi({ description: 'name of one of the tenant\'s pools' }),
}).strict();

// Strict, as the agent body and pool targets are: a member a kind does not have (an agent-http
// `apiKey`, a misspelt `api_key`) was dropped silently, and calls then went without it.
export const UpstreamConfig = z
  .discriminatedUnion('kind', [BuiltinUpstream, AgentHttpUpstream, OpenAIChatUpstream, PoolUpstream])
  .openapi('Upstream', { example: { kind: 'builtin' } });
export type UpstreamConfig = z.infer<typeof UpstreamConfig>;

export const AgentState = z.enum(['idle', 'running', 'paused']);
export type AgentState = z.infer<typeof AgentState>;

const Name = DisplayName;

export const A2ASkill = z
  .object({
    id: z.string().regex(/^[a-zA-Z0-9_.-]{1,64}$/),
    name: DisplayName,
    description: z.string().min(1).max(2_000),
    tags: z.array(z.string().min(1).max(64)).max(16).default([]),
    examples: z.array(z.string().min(1).max(500)).max(8).optional(),
  })
  .strict();

/** A skill's id is what A2A clients tell skills apart by: a card naming one twice was served as given. */
function uniqueSkillIds(skills: readonly { id: string }[], ctx: z.RefinementCtx): void {
  const seen = new Set<string>();
  skills.forEach(({ id }, i) => {
    if (seen.has(id)) ctx.addIssue({ code: 'custom', path: [i, 'id'], message: `skill id ${id} appears more than once` });
    seen.add(id);
  });
}

/** How the agent presents itself as an Agent2Agent server (docs/A2A.md). */
export const A2AConfig = z
  .object({
    publicCard: z.boolean().optional().openapi({ description: 'serve the agent card without an API key' }),
    description: z.string().min(1).max(2_000).optional().openapi({ description: 'the agent card\'s description (instructions are never shown)' }),
    skills: z.array(A2ASkill).min(1).max(32).superRefine(uniqueSkillIds).optional().openapi({ description: 'skills on the agent card (distinct ids); one derived from the agent when absent' }),
  })
  .strict()
  .openapi('A2AConfig');
export type A2AConfig = z.infer<typeof A2AConfig>;
const Instructions = z.string().max(32_000);
const Concurrency = z.number().int().min(1).max(32);

export const CreateAgentBody = z
  .object({
    id: AgentId.optional(),
    name: Name.optional(),
    instructions: Instructions.optional(),
    upstream: UpstreamConfig.optional(),
    concurrency: Concurrency.default(1),
    region: Region.optional(),
    jurisdiction: Jurisdiction.optional(),
    metadata: Metadata.optional(),
    a2a: A2AConfig.optional(),
  })
  .strict()
  .openapi('CreateAgent');
export type CreateAgentBody = z.infer<typeof CreateAgentBody>;

export const UpdateAgentBody = z
  .object({
    name: Name.nullable().optional(),
    instructions: Instructions.nullable().optional(),
    upstream: UpstreamConfig.optional(),
    concurrency: Concurrency.optional(),
    metadata: Metadata.nullable().optional(),
    // A union, not A2AConfig.nullable(): on a registered schema, the generator documents that
    // as allOf [A2AConfig, object|null], which refuses the null that removes the settings.
    a2a: z.union([A2AConfig, z.null()]).optional().openapi({ description: 'the A2A settings, replaced whole; null removes them' }),
    paused: z.boolean().optional().openapi({ description: 'a paused agent queues executions without starting them' }),
  })
  .strict()
  // Only a body that is otherwise valid can be empty: one whose only member is refused (a fixed
  // field such as region) is parsed without it and was also told "nothing to update".
  .refine((b) => Object.keys(b).length > 0, { message: 'nothing to update', when: (payload) => payload.issues.length === 0 })
  .openapi('UpdateAgent', { minProperties: 1 });
export type UpdateAgentBody = z.infer<typeof UpdateAgentBody>;

/** What an agent stores about itself (the API view masks upstream credentials). */
export const AgentConfig = z.object({
  id: AgentId,
  name: Name.nullable(),
  instructions: Instructions.nullable(),
  upstream: UpstreamConfig,
  concurrency: Concurrency,
  region: Region.nullable(),
  jurisdiction: Jurisdiction.nullable(),
  metadata: Metadata.nullable(),
  /** Absent on agents created before A2A, and when never set. */
  a2a: A2AConfig.optional(),
});
export type AgentConfig = z.infer<typeof AgentConfig>;

/** Set on reads served from the last D1 snapshot while the agent's object is unreachable. */
export const Stale = z.boolean().optional().openapi({ description: 'true when served from the last snapshot because the agent was unreachable' });

export const Agent = AgentConfig.extend({
  state: AgentState,
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
  stale: Stale,
}).openapi('Agent');
export type Agent = z.infer<typeof Agent>;

/** Agents a batch create takes at once: its claims and audit rows are one D1 batch each. */
export const MAX_BATCH_AGENTS = 100;

export const BatchCreateAgentsBody = z
  .object({ agents: z.array(CreateAgentBody).min(1).max(MAX_BATCH_AGENTS).openapi({ description: 'the agents to create; an id given twice is refused' }) })
  .strict()
  .superRefine(({ agents }, ctx) => {
    const seen = new Set<string>();
    agents.forEach(({ id }, i) => {
      if (id === undefined) return;
      if (seen.has(id)) ctx.addIssue({ code: 'custom', path: ['agents', i, 'id'], message: `id ${id} appears more than once` });
      seen.add(id);
    });
  })
  .openapi('BatchCreateAgents');
export type BatchCreateAgentsBody = z.infer<typeof BatchCreateAgentsBody>;

export const BatchCreateResult = z
  .object({
    id: z.string(),
    status: z.number().int().openapi({ description: 'what POST /v1/agents would have answered for this agent: 201, or its error status' }),
    agent: Agent.optional(),
    error: ErrorBody.shape.error.optional().openapi({ description: "the error, as the single create's envelope would carry it" }),
  })
  .openapi('BatchCreateResult');

export const BatchCreateAgentsResponse = z
  .object({
    created: z.number().int(),
    failed: z.number().int(),
    results: z.array(BatchCreateResult).openapi({ description: 'one per agent asked for, in the order asked' }),
  })
  .openapi('BatchCreateAgentsResponse');
export type BatchCreateAgentsResponse = z.infer<typeof BatchCreateAgentsResponse>;

export const AgentStatus = z
  .object({
    state: AgentState,
    running: z.number().int(),
    queued: z.number().int(),
    contextVersion: z.number().int(),
    lastExecution: z
      .object({ id: z.string(), status: z.string(), finishedAt: z.string().nullable() })
      .nullable(),
    stale: Stale,
  })
  .openapi('AgentStatus');
export type AgentStatus = z.infer<typeof AgentStatus>;

export const AgentContext = z
  .object({ version: z.number().int(), data: z.record(z.string(), z.unknown()) })
  .openapi('AgentContext');
export type AgentContext = z.infer<typeof AgentContext>;

/** Largest context document (UTF-8 bytes of its JSON), well under the 2 MB row limit. */
export const MAX_CONTEXT_BYTES = 1024 * 1024;

/** Longest top-level member name of a context patch (an upstream's too). */
export const MAX_CONTEXT_KEY_CHARS = 256;

export const ContextPatch = boundedJson(z.record(z.string().max(MAX_CONTEXT_KEY_CHARS), z.unknown()), MAX_CONTEXT_BYTES)
  .openapi('ContextPatch', { description: 'JSON Merge Patch (RFC 7396) applied to the context' });
