-- Completed transactions by the index row's age, for the cron's sweep of coordinators that
-- never deleted themselves (worker/transactions/sweep.ts). Partial: rows still preparing are
-- the coordinators' own business and are never swept.
CREATE INDEX transactions_done_by_age ON transactions(updated_at) WHERE status != 'preparing';
