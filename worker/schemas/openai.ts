import { z } from '@hono/zod-openapi';
import { AgentId, boundedDepth } from './common';

const ContentPart = z.looseObject({ type: z.string().max(64) });

export const ChatMessage = z.looseObject({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
  content: z.union([z.string().max(1_000_000), z.array(ContentPart).max(256), z.null()]).optional(),
  name: z.string().max(256).optional(),
});

/**
 * An OpenAI chat completions request. Known fields are validated; the rest pass through to
 * the upstream unchanged, so new OpenAI parameters work without a gateway release.
 */
// Unknown fields pass through, so their nesting is bounded here (size by the body limit).
export const ChatCompletionRequest = boundedDepth(
  z.looseObject({
    model: z
      .string()
      .min(1)
      .max(256)
      // An empty part would reach a target as model "" or look up agent "": neither names anything.
      .refine((m) => !m.endsWith('/') && !m.startsWith('/') && m !== 'agent:', { message: 'a model is "<pool>", "<pool>/<model>" or "agent:<agent id>", with no part empty' })
      // An agent id no agent can have (a slash, a space, too long) is a malformed name, not an agent not found.
      .refine((m) => m === 'agent:' || !m.startsWith('agent:') || AgentId.safeParse(m.slice('agent:'.length)).success, {
        message: 'the agent id of "agent:<agent id>" is 1-64 characters of a-z, A-Z, 0-9, _ and -',
      })
      .openapi({ description: '"<pool>", "<pool>/<model>" or "agent:<agent id>"' }),
    messages: z.array(ChatMessage).min(1).max(2_000),
    // OpenAI takes null for its optional parameters as their absence, and the official client's
    // types allow it (a Python caller's None is sent as null): null is refused nowhere it takes it.
    stream: z.boolean().nullable().optional(),
    temperature: z.number().min(0).max(2).nullable().optional(),
  }),
).openapi('ChatCompletionRequest');
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequest>;

export const ChatCompletion = z
  .looseObject({
    id: z.string(),
    object: z.literal('chat.completion'),
    created: z.number().int(),
    model: z.string(),
    choices: z.array(z.looseObject({ index: z.number().int(), message: z.looseObject({ role: z.string(), content: z.string().nullable() }), finish_reason: z.string().nullable() })),
    usage: z
      .looseObject({ prompt_tokens: z.number().int(), completion_tokens: z.number().int(), total_tokens: z.number().int() })
      .optional()
      .openapi({ description: "the target's usage as it reported it; for the built-in responder an estimate (~4 characters a token), and through an agent what its upstream reported, else that estimate" }),
  })
  .openapi('ChatCompletion');

export const Model = z.object({ id: z.string(), object: z.literal('model'), created: z.number().int(), owned_by: z.string() }).openapi('Model');
export type Model = z.infer<typeof Model>;

export const ModelList = z.object({ object: z.literal('list'), data: z.array(Model) }).openapi('ModelList');

/** The text of a message's content (string, or the text parts of an array). */
export function contentText(content: ChatCompletionRequest['messages'][number]['content']): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.map((part) => (part.type === 'text' && typeof part.text === 'string' ? part.text : '')).join('');
}
