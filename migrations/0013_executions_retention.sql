-- D1's finished executions by the time they last changed, across tenants, for the cron's
-- retention (worker/agents/execution-retention.ts, D1_EXECUTION_RETENTION_DAYS). Partial: rows
-- of queued or running executions are never pruned, so they are not in it, and a tick reads
-- only rows it deletes, however many old executions stay unfinished. One more index entry per
-- finished execution row.
CREATE INDEX executions_done_by_update ON executions(updated_at) WHERE status IN ('succeeded', 'failed', 'cancelled');
