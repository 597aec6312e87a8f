import { Role, type Message, type Part } from '@a2a-js/sdk';

/** The A2A parts and messages the gateway makes (the SDK's v1.0 types, every field set). */

export const textPart = (text: string): Part => ({ content: { $case: 'text', value: text }, mediaType: 'text/plain', filename: '', metadata: undefined });
export const dataPart = (value: unknown): Part => ({ content: { $case: 'data', value }, mediaType: 'application/json', filename: '', metadata: undefined });

export function agentMessage(messageId: string, taskId: string, contextId: string, parts: Part[]): Message {
  return { messageId, taskId, contextId, role: Role.ROLE_AGENT, parts, metadata: undefined, extensions: [], referenceTaskIds: [] };
}
