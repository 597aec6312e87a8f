import { OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { methodNotAllowed } from 'hono/method-not-allowed';
import type { AppEnv } from './env';
import type { ClientApp } from './client-type';
import { ApiError, invalidRequest, missingBodyError, validationError } from './errors';
import { queryIssues } from './lib/repeated-query';
import { adminAuth } from './middleware/admin-auth';
import { d1Session } from './middleware/d1-session';
import { logAgentParams, requestLog } from './middleware/request-log';
import { requestIds, setResponseHeader } from './middleware/response-headers';
import { headerLimits } from './middleware/header-limits';
import { mcpCors } from './middleware/mcp-cors';
import { bodyLimit } from './middleware/body-limit';
import { utf8Body } from './middleware/utf8-body';
import { bodyEncoding } from './middleware/body-encoding';
import { Scalar } from '@scalar/hono-api-reference';
import { stats } from './routes/stats';
import { apiKeyAuth } from './middleware/api-key-auth';
import { onError, onNotFound, renderError } from './middleware/error-handler';
import { admin } from './routes/admin';
import { adminHooks } from './routes/admin-hooks';
import { adminTransactions } from './routes/admin-transactions';
import { agentState } from './routes/agent-state';
import { agents } from './routes/agents';
import { executions } from './routes/executions';
import { health } from './routes/health';
import { pools } from './routes/pools';
import { openai } from './routes/openai';
import { webhooks } from './routes/webhooks';
import { events } from './routes/events';
import { hooks } from './routes/hooks';
import { transactions } from './routes/transactions';
import { audit } from './routes/audit';
import { usage } from './routes/usage';
import { keyLimits } from './limits/middleware';
import { mcp } from './routes/mcp';
import { a2a, a2aRpc } from './routes/a2a';
import { withMiddlewareHeaders } from './routes/openapi-headers';
import { GatewayRouter } from './lib/router';

/** Where the API reference page (GET /docs) loads Scalar's script: public/vendor/scalar/standalone.js. */
const SCALAR_SCRIPT = '/vendor/scalar/standalone.js';
/**
 * The reference page is an API client a user types a key into and sends requests from, on the
 * dashboard's origin: like the dashboard (public/_headers) it may not be framed by another site
 * (clickjacking its Send buttons), sniffed, or given a <base> or plugin. Its script policy stays
 * open: Scalar's page is configured by an inline script and styles itself inline. <object> may
 * load blob: URLs only: Scalar previews an HTML or PDF answer (an upstream's error page passed
 * through a chat completion) as an <object> of a blob: URL it made, which 'none' refused.
 */
const DOCS_PAGE_HEADERS: Record<string, string> = {
  'content-security-policy': "frame-ancestors 'none'; base-uri 'none'; object-src blob:",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

const docsPageHeaders = async (c: Context<AppEnv>, next: () => Promise<void>) => {
  await next();
  for (const [name, value] of Object.entries(DOCS_PAGE_HEADERS)) setResponseHeader(c, name, value);
};

/** Largest request body the API reads. */
export const MAX_BODY_BYTES = 1024 * 1024;
/** Largest request headers: in total, and any one of them. */
export const MAX_HEADER_BYTES = { total: 16 * 1024, each: 8 * 1024 };

/**
 * The edge API: request id, 405s, body limit, auth, then one router per resource. Every route
 * is declared with @hono/zod-openapi, so the schemas that validate also document it.
 */
export function createApp() {
  const app = new OpenAPIHono<AppEnv>({
    router: new GatewayRouter(),
    defaultHook: (result, c) => {
      if (result.success && result.target === 'param') logAgentParams(c, result.data as Record<string, unknown>);
      // A required JSON body that never came reaches its validator as `{}`: Hono reads no body
      // without a JSON Content-Type, and zod-openapi's media-type gate has already answered 415
      // for a body sent with another or none. `{}` would pass every schema whose members are
      // all optional (POST /v1/agents created an agent from nothing). An optional body never
      // gets here without a Content-Type: zod-openapi skips its validator.
      if (result.target === 'json' && c.req.header('content-type') === undefined) throw missingBodyError();
      if (!result.success && result.target === 'query') throw invalidRequest(queryIssues(result.error, c.req.queries()), result.error.issues.length);
      if (!result.success) throw validationError(result.error);
    },
  });

  app.use(requestIds({ headerName: 'x-request-id', limitLength: 128 }));
  app.use(requestLog());
  // Before every check that can refuse, so a browser page can read those refusals too, and before
  // the 405s, which would answer a preflight.
  const headerSizes = { maxTotalBytes: MAX_HEADER_BYTES.total, maxHeaderBytes: MAX_HEADER_BYTES.each };
  app.use('/mcp', mcpCors(headerSizes));
  app.use(headerLimits(headerSizes));
  app.use(
    methodNotAllowed({
      app,
      onMethodNotAllowed: (c, allowed) =>
        renderError(c, new ApiError('method_not_allowed', `${c.req.method} is not allowed here; use ${allowed.join(', ')}`, { allowed }, { allow: allowed.join(', ') })),
    }),
  );
  app.use(bodyLimit(MAX_BODY_BYTES));
  app.use('/v1/*', d1Session());
  app.use('/v1/admin/*', adminAuth());
  // Senders of incoming webhooks (POST /v1/hooks/:id) authenticate by signature, not by key.
  const signedByScheme = (method: string, path: string) => method === 'POST' && /^\/v1\/hooks\/[^/]+$/.test(path);
  // Before anything reads the body as text (a limited key's limits do). Not for incoming hooks,
  // whose senders sign bytes that need not be UTF-8 (README, Incoming webhooks): see utf8Body.
  app.use(utf8Body((c) => signedByScheme(c.req.method, c.req.path)));
  const tenantAuth = apiKeyAuth();
  // /v1 itself is no route: its 404 points at the routes below it, and is where / sends a browser,
  // which carries no key (a 401 there told it nothing). Every path below /v1 still needs one.
  const isV1Root = (path: string) => path === '/v1' || path === '/v1/';
  app.use('/v1/*', async (c, next) => (c.req.path.startsWith('/v1/admin/') || signedByScheme(c.req.method, c.req.path) || isV1Root(c.req.path) ? next() : tenantAuth(c, next)));
  // After auth: a key's rate limits and budgets (nothing for keys without limits).
  app.use('/v1/*', keyLimits());
  // After auth and limits, as the routes' own 415 for a body that is not JSON: a body every
  // route would decode wrongly (another charset, a content coding). /mcp and /a2a check it themselves.
  app.use('/v1/*', bodyEncoding());

  // Chained, so the app's type carries every route for `hono/client` (see AppType).
  const routes = app
    .route('/', health)
    .route('/', admin)
    .route('/', adminTransactions)
    .route('/', adminHooks)
    .route('/', agents)
    .route('/', executions)
    .route('/', agentState)
    .route('/', pools)
    .route('/', openai)
    .route('/', webhooks)
    .route('/', events)
    .route('/', hooks)
    .route('/', stats)
    .route('/', transactions)
    .route('/', audit)
    .route('/', usage)
    .route('/', mcp);
  // A2A is a JSON-RPC protocol with its own clients: in the OpenAPI document, not in AppType.
  app.route('/', a2a).route('/', a2aRpc);

  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', {
    type: 'http',
    scheme: 'bearer',
    description: 'a tenant API key (eag_…), or the operator token for /v1/admin routes',
  });
  const documentConfig = {
    openapi: '3.1.0',
    info: {
      title: 'edge-agent-gateway',
      version: '0.1.0',
      description: 'High-availability gateway for enterprise AI agents. Errors use one envelope: {"error":{"code","message","requestId","details"?}}.',
    },
  };
  // As app.doc31 would serve it, plus the headers middleware reads and adds (request id, limits, D1 bookmark).
  app.get('/openapi.json', (c) => c.json(withMiddlewareHeaders(app.getOpenAPI31Document(documentConfig))));

  // Everything the page loads comes from this origin, so it renders offline and where CDNs are
  // blocked: Scalar's script is a static asset (public/vendor/scalar/, vendored with its version and
  // hash by scripts/vendor-scalar.mjs), and no web fonts from Scalar's
  // font host (the system's fonts instead). An empty icon, as the dashboard's, spares the browser
  // asking /favicon.ico, which no route serves (a 404 in the page's console).
  app.get('/docs', docsPageHeaders, Scalar({ url: '/openapi.json', pageTitle: 'edge-agent-gateway API', cdn: SCALAR_SCRIPT, withDefaultFonts: false, favicon: 'data:,' }));

  // The dashboard's files and the reference's script are static assets, but wrangler.toml runs
  // the Worker first for them (run_worker_first) so that they pass the same middleware as the
  // API and carry its x-request-id: served from the assets binding, whose answer (its _headers,
  // redirects and 304s included) goes back as it is, but for a missing file, which is the API's
  // 404 envelope as before. Routes like any other, so the API pays nothing for them.
  const asset = async (c: Context<AppEnv>) => {
    const response = await c.env.ASSETS.fetch(c.req.raw);
    if (response.status !== 404) return response;
    void response.body?.cancel().catch(() => undefined);
    return onNotFound(c);
  };
  app.get('/dashboard', asset);
  app.get('/dashboard/*', asset);
  app.get('/vendor/*', asset);

  app.onError(onError);
  app.notFound(onNotFound);
  return routes;
}

/**
 * The API's type, for a typed client: `hc<AppType>(baseUrl, { headers })` from `hono/client`
 * (see docs/CLIENT.md). Optional-only query strings and headers may be left out (ClientApp).
 */
export type AppType = ClientApp<ReturnType<typeof createApp>>;
