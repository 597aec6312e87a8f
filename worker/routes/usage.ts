import { OpenAPIHono, createRoute } from '@hono/zod-openapi';
import type { AppEnv } from '../env';
import { ApiError } from '../errors';
import { limiter, limiterName } from '../limits/limiter';
import { KeyUsage } from '../schemas/limits';
import { commonErrors, json, security } from './openapi';

export const usage = new OpenAPIHono<AppEnv>().openapi(
  createRoute({
    method: 'get',
    path: '/v1/usage',
    tags: ['usage'],
    summary: "The calling key's limits, its requests in flight and its budget used this period",
    security,
    responses: { 200: json(KeyUsage, 'the usage'), ...commonErrors },
  }),
  async (c) => {
    const { keyId, limits } = c.get('principal');
    if (!limits) return c.json({ limits: null, inFlight: null, budget: null }, 200);
    const { perSecond: _s, perMinute: _m, shards: _n, ...exact } = limits;
    const used = await limiter(c.env, limiterName(keyId))
      .usage(exact)
      .catch((error: unknown) => {
        // As for every request its budget cannot be checked for: the counts live only in that object.
        console.error(JSON.stringify({ level: 'error', msg: 'key limiter unreachable', requestId: c.get('requestId'), key: keyId, error: String(error) }));
        throw new ApiError('unavailable', "the key's usage cannot be read right now; retry later", undefined, { 'retry-after': '1' });
      });
    return c.json({ limits, ...used }, 200);
  },
);
