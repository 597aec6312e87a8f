import { z } from '@hono/zod-openapi';
import { HttpUrl } from './common';

export const EventType = z.enum(['execution.succeeded', 'execution.failed', 'execution.cancelled', 'transaction.committed', 'transaction.aborted']);
export type EventType = z.infer<typeof EventType>;

/** Every event a webhook can subscribe to, when it names none. */
export const ALL_EVENTS: readonly EventType[] = EventType.options;

/**
 * "whsec_" and padded base64 of 24 or more bytes. Padded, since receivers decode it with their
 * platform's strict decoder (Python's standardwebhooks library fails on a missing "="), so a
 * secret only lenient decoders read would sign deliveries its receiver cannot verify.
 */
export const STANDARD_SECRET = /^whsec_(?:[A-Za-z0-9+/]{4}){8,}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
export const STANDARD_SECRET_RULE = 'a Standard Webhooks secret: "whsec_" and base64 of 24 or more bytes, padded with "=" to a multiple of 4 characters';

export const WebhookSecret = z.string().max(512).regex(STANDARD_SECRET, STANDARD_SECRET_RULE);

export const CreateWebhookBody = z
  .object({
    url: HttpUrl,
    // Repeated names are kept once (see AgentWebhooks.create), so the bound is on the request's
    // size, not the number of events: at most five names refused a list with a repeat in it.
    events: z.array(EventType).min(1).max(64).optional(),
    secret: WebhookSecret.optional(),
  })
  .strict()
  .openapi('CreateWebhook');
export type CreateWebhookBody = z.infer<typeof CreateWebhookBody>;

export const Webhook = z
  .object({ id: z.string(), url: z.string(), events: z.array(EventType), createdAt: z.string() })
  .openapi('Webhook');
export type Webhook = z.infer<typeof Webhook>;

export const CreatedWebhook = Webhook.extend({ secret: z.string().openapi({ description: 'shown only in this response' }) }).openapi('CreatedWebhook');

export const DeliveryStatus = z.enum(['pending', 'delivered', 'dead']);

export const Delivery = z
  .object({
    id: z.string().openapi({ description: 'the webhook-id header: the same on every retry' }),
    webhookId: z.string(),
    eventType: EventType,
    status: DeliveryStatus,
    attempts: z.number().int(),
    nextAttemptAt: z.string().nullable(),
    lastStatus: z.number().int().nullable(),
    lastError: z.string().nullable(),
    createdAt: z.string(),
    deliveredAt: z.string().nullable(),
  })
  .openapi('Delivery');
export type Delivery = z.infer<typeof Delivery>;

export const ListDeliveriesQuery = z.object({
  status: DeliveryStatus.optional(),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(512).optional(),
});

/** An event as streamed (SSE `id` is `seq`) and as delivered to webhooks. */
export interface AgentEvent {
  seq: number;
  type: string;
  timestamp: string;
  data: unknown;
}
