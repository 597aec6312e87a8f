import type { AgentDO } from '../durable/agent';
import type { TransactionDO } from '../durable/transaction';

/** Bindings of the Worker, as declared in wrangler.toml (plus secrets from .dev.vars). */
export interface Env {
  AGENTS: DurableObjectNamespace<AgentDO>;
  /** One coordinator per multi-agent transaction (two-phase commit). */
  TRANSACTIONS: DurableObjectNamespace<TransactionDO>;
  DB: D1Database;
  CACHE: KVNamespace;
  /** Operator token for /v1/admin routes (secret). */
  ADMIN_TOKEN?: string;
  /** Base64 of 32 bytes: the AES-GCM key that seals upstream credentials at rest (secret). */
  UPSTREAM_ENCRYPTION_KEY?: string;
  /** Lowest level of request log lines written: debug | info (default) | warn | error. */
  LOG_LEVEL?: string;
  /** "true" lets tenants point upstreams and webhooks at private or loopback addresses. */
  ALLOW_PRIVATE_UPSTREAMS?: string;
  /** DNS-over-HTTPS JSON endpoint the outbound guard resolves names with (default Cloudflare's). */
  DNS_RESOLVER_URL?: string;
  /** Comma-separated CIDRs the outbound guard permits although private (e.g. an operator's VPC). */
  OUTBOUND_ALLOW_CIDRS?: string;
}

/** The authenticated caller of a /v1 route. */
export interface Principal {
  tenantId: string;
  keyId: string;
}

export interface AppVariables {
  requestId: string;
  principal: Principal;
  /** Fields handlers add to the request's log line (agent, execution, upstream, …). */
  log: Record<string, string | number | boolean | undefined>;
}

export interface AppEnv {
  Bindings: Env;
  Variables: AppVariables;
}
