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
  /** "true" lets tenants point upstreams and webhooks at private or loopback addresses. */
  ALLOW_PRIVATE_UPSTREAMS?: string;
}

/** The authenticated caller of a /v1 route. */
export interface Principal {
  tenantId: string;
  keyId: string;
}

export interface AppVariables {
  requestId: string;
  principal: Principal;
}

export interface AppEnv {
  Bindings: Env;
  Variables: AppVariables;
}
