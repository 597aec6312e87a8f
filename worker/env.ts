import type { AgentDO } from '../durable/agent';
import type { TokenCharge } from '../durable/agent-rpc';
import type { KeyLimiterDO } from '../durable/key-limiter';
import type { ProjectorDO } from '../durable/projector';
import type { TransactionDO } from '../durable/transaction';
import type { ApiError } from './errors';
import type { WorkOutcome } from './limits/work';
import type { KeyLimits } from './schemas/limits';

/** Bindings of the Worker, as declared in wrangler.toml (plus secrets from .dev.vars). */
export interface Env {
  AGENTS: DurableObjectNamespace<AgentDO>;
  /** One coordinator per multi-agent transaction (two-phase commit). */
  TRANSACTIONS: DurableObjectNamespace<TransactionDO>;
  /** One rate/budget limiter per API key that has limits (plus rate shards of hot keys). */
  KEY_LIMITS: DurableObjectNamespace<KeyLimiterDO>;
  /** The projection stage: agents' outbox rows reach D1 through its few shards, batched. */
  PROJECTOR: DurableObjectNamespace<ProjectorDO>;
  /** Agent cards asked for without a key, per client address (rate limiting binding). */
  PUBLIC_CARD_LIMIT: RateLimit;
  DB: D1Database;
  CACHE: KVNamespace;
  /** The static assets (public/): the dashboard is served through it, so its responses carry a request id. */
  ASSETS: Fetcher;
  /** Operator token for /v1/admin routes (secret). */
  ADMIN_TOKEN?: string;
  /** Base64 of 32 bytes: the AES-GCM key that seals upstream credentials at rest (secret). */
  UPSTREAM_ENCRYPTION_KEY?: string;
  /** Lowest level of request log lines written: debug | info (default) | warn | error. */
  LOG_LEVEL?: string;
  /** "true" lets tenants point upstreams and webhooks at private or loopback addresses. */
  ALLOW_PRIVATE_UPSTREAMS?: string;
  /** Comma-separated origins (`https://app.example`) whose browser requests may call /mcp. */
  MCP_ALLOWED_ORIGINS?: string;
  /** Comma-separated Host values (`gateway.example.com`) /mcp answers on; unset: every Host is accepted. */
  MCP_ALLOWED_HOSTS?: string;
  /** "true" allows the scripted `builtin` upstream mode "a2a-conformance" (A2A conformance runs). */
  ENABLE_CONFORMANCE_UPSTREAM?: string;
  /** Waits between outgoing webhook attempts, comma-separated ms (default 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h). */
  WEBHOOK_RETRY_SCHEDULE_MS?: string;
  /** "true" enables the chaos suite's hook that resets an agent's object (never set in wrangler.toml). */
  ENABLE_CHAOS?: string;
  /** DNS-over-HTTPS JSON endpoint the outbound guard resolves names with (default Cloudflare's). */
  DNS_RESOLVER_URL?: string;
  /** Pools each tenant may hold (default 1000): a PUT of a new pool beyond it is 409 `pool_limit_reached`. */
  MAX_POOLS_PER_TENANT?: string;
  /** Streams each agent holds open, event streams (SSE and WebSocket) and A2A streams together (default 32, at most 10,000): one more is 429 `too_many_streams`. */
  MAX_STREAMS_PER_AGENT?: string;
  /** Streams one API key holds open across agents, event streams (SSE and WebSocket) and A2A streams together (default 64, at most 100,000): one more is 429 `too_many_streams`. */
  MAX_STREAMS_PER_KEY?: string;
  /** Comma-separated CIDRs the outbound guard permits although private (e.g. an operator's VPC). */
  OUTBOUND_ALLOW_CIDRS?: string;
  /** Days D1 keeps a finished execution's row (default 90; 0 keeps every one): worker/agents/execution-retention.ts. */
  D1_EXECUTION_RETENTION_DAYS?: string;
}

/** The authenticated caller of a /v1 route. */
export interface Principal {
  tenantId: string;
  keyId: string;
  /** The key's rate limits and budgets; absent for an unlimited key (no limiter round trip). */
  limits?: KeyLimits;
}

export interface AppVariables {
  requestId: string;
  principal: Principal;
  /** Fields handlers add to the request's log line (agent, execution, upstream, …). */
  log: Record<string, string | number | boolean | undefined>;
  /**
   * The most completion tokens a chat may ask for: set when its key's token budget could
   * reserve less than the gateway's default guess and the chat stated no cap of its own.
   */
  completionTokenCap?: number;
  /** The request body is not UTF-8 (worker/middleware/utf8-body.ts): the routes refuse it with 415. */
  bodyNotUtf8?: boolean;
  /**
   * Tokens a chat used, set where the gateway answered it itself (a builtin target, a chat
   * through an agent) and so knows them without reading the body, which a stream need not
   * carry them in, or where a relayed stream's usage chunk the client did not ask for was
   * removed (set as it passes, before the body ends): the limits middleware settles the token
   * budget with it once the body has ended.
   */
  tokensUsed?: number;
  /**
   * Characters of answer text a relayed stream carried (content, tool-call arguments, …), set
   * when the stream ended without the target reporting its usage: the limits middleware
   * settles the token budget with an estimate from it instead of the reservation.
   */
  completionChars?: number;
  /**
   * What a budgeted request's work came to where its status does not say: set by the routes
   * through `noteWork` (worker/limits/work.ts) and read by the limits middleware when it
   * settles the request's lease.
   */
  work?: WorkOutcome;
  /**
   * Set when the key's budget refused the request but an answer the gateway already has could
   * serve it (a repeated Idempotency-Key, a response-cache hit): the route answers only that and
   * starts nothing; anything else is answered with this refusal (worker/limits/middleware.ts).
   * On `/mcp` the tool call answers the refusal itself, as a tool error (`refusesInProtocol`).
   */
  replayOnly?: ApiError;
  /**
   * The token reservation an execution request holds (a key with a token budget): the route
   * hands it to the agent with the execution, which settles it once the execution has ended.
   */
  tokenCharge?: TokenCharge;
}

export interface AppEnv {
  Bindings: Env;
  Variables: AppVariables;
}
