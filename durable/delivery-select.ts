import type { DeliveryRow } from './agent-webhooks';
import type { Sql } from './sql';

export type DueDelivery = DeliveryRow & { url: string | null; secret: string | null };

/**
 * The due deliveries a pass takes: not those another pass holds (`claimed`, delivery id to
 * target), and in turns across targets, each target's next due ones after those it has held
 * already, earliest first within a turn.
 *
 * Picking the `limit` earliest due and then dropping the held ones let a receiver with a
 * backlog fill every pass: a new pass found the 50 earliest all held by the first and took
 * nothing, so a delivery to another receiver waited until that backlog had been sent.
 */
export function selectDue(sql: Sql, now: number, claimed: ReadonlyMap<string, string>, limit: number): DueDelivery[] {
  const held: Record<string, number> = {};
  for (const target of claimed.values()) held[target] = (held[target] ?? 0) + 1;
  return sql.all<DueDelivery>(
    `WITH due AS (
       SELECT id, webhook_id, next_at, row_number() OVER (PARTITION BY webhook_id ORDER BY next_at, id) AS turn
       FROM deliveries WHERE status = 'pending' AND next_at <= ? AND id NOT IN (SELECT value FROM json_each(?)))
     SELECT d.*, w.url AS url, w.secret AS secret
     FROM due JOIN deliveries d ON d.id = due.id
       LEFT JOIN webhooks w ON w.id = d.webhook_id
       LEFT JOIN json_each(?) h ON h.key = due.webhook_id
     ORDER BY due.turn + coalesce(h.value, 0), due.next_at, due.id LIMIT ?`,
    now, JSON.stringify([...claimed.keys()]), JSON.stringify(held), limit,
  );
}
