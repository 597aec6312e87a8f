import { endpointUrl } from './endpoint';
import { postJson } from './http-attempt';
import { usageOf } from '../limits/usage';
import { isChatCompletion } from '../openai/completions';
import { UpstreamError, type AttemptOptions, type Upstream, type UpstreamReply, type UpstreamRequest } from './types';

interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export function chatMessages(request: UpstreamRequest): ChatMessage[] {
  const messages: ChatMessage[] = [];
  if (request.instructions) messages.push({ role: 'system', content: request.instructions });
  for (const entry of request.history) messages.push({ role: entry.role, content: entry.content });
  messages.push({ role: 'user', content: userContent(request) });
  return messages;
}

/** The user turn: `input.message` when there is one (chat), else the intent and its input. */
function userContent(request: UpstreamRequest): string {
  const { input } = request;
  if (input && typeof input === 'object' && 'message' in input && typeof input.message === 'string') return input.message;
  if (input === undefined || input === null) return request.intent;
  return `${request.intent}\n\n${typeof input === 'string' ? input : JSON.stringify(input)}`;
}

/** An OpenAI-compatible chat completions back end (non-streaming). */
export function openAIChatUpstream(baseUrl: string, model: string, apiKey: string | undefined, timeoutMs?: number): Upstream {
  const url = endpointUrl(baseUrl, '/chat/completions');
  return {
    label: `openai-chat ${new URL(baseUrl).host} ${model}`,
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
    async call(request: UpstreamRequest, { signal }: AttemptOptions): Promise<UpstreamReply> {
      const headers: Record<string, string> = { 'idempotency-key': request.executionId };
      if (apiKey) headers.authorization = `Bearer ${apiKey}`;
      // No completion at all (a torn body, or JSON of another shape) is the target answering
      // wrong, tried again (on a pool, on another target) like a 5xx, as a chat completion
      // through the pool is; a completion without text content is a model's answer the agent
      // cannot use, which another try would repeat.
      const reply = await postJson(url, { model, messages: chatMessages(request) }, headers, signal, { retryUnparsed: true, credential: apiKey });
      if (!isChatCompletion(reply)) throw new UpstreamError('invalid_response', 'upstream reply is not a chat completion (no "choices" array)', true);
      const answer = reply as { choices: { message?: { content?: unknown } }[]; usage?: unknown };
      const content = answer.choices[0]?.message?.content;
      if (typeof content !== 'string') {
        throw new UpstreamError('invalid_response', 'chat completion has no choices[0].message.content', false);
      }
      // Kept with the answer, so a chat through the agent settles the key's token budget with it.
      const usage = usageOf(answer.usage);
      return { output: { reply: content, model, ...(usage && { usage }) } };
    },
  };
}
