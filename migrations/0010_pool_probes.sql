-- When the cron's health probes are next due for each pool (ms since the epoch), so a run takes
-- the pools due soonest through an index instead of sorting the whole table, and no tenant's
-- pools wait behind another tenant's: worker/pools/probe-schedule.ts sets it when it takes a
-- pool, later for a tenant with more pools. 0: never probed, so first in line.
ALTER TABLE pools ADD COLUMN probe_due INTEGER NOT NULL DEFAULT 0;
CREATE INDEX pools_by_probe_due ON pools(probe_due);
