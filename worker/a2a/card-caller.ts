import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from '../env';
import { keyLimits } from '../limits/middleware';
import { apiKeyAuth } from '../middleware/api-key-auth';
import { limitAnonymousCard } from './card-limit';

/**
 * Who asks for an agent card. With an Authorization header it is a key: authenticated (401 as
 * for /v1), and counted against the key's rate windows like any /v1 read; a card starts no
 * upstream work, so budgets and the concurrency cap do not apply. Without one it asks for a
 * public card and counts against its address's bucket (card-limit.ts), there being no key to
 * count against; the card is sent cacheable (docs/A2A.md, "The agent card").
 *
 * @example a2a.use('/a2a/:id/.well-known/agent-card.json', cardCaller())
 */
export function cardCaller(): MiddlewareHandler<AppEnv> {
  const authenticate = apiKeyAuth();
  const limit = keyLimits();
  return async function cardCaller(c, next) {
    if (c.req.header('authorization') === undefined) {
      await limitAnonymousCard(c);
      return next();
    }
    await authenticate(c, async () => {
      await limit(c, next);
    });
  };
}
