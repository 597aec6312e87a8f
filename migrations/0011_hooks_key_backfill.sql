-- Hooks registered before 0008 recorded no key, so their deliveries counted against no key's
-- limits until PUT again. Since 0006 every PUT of a hook wrote a `hook.put` audit entry in the
-- same batch as the write, its actor the key that made it: the latest such entry of the hook's
-- tenant names the key that registered or last replaced it, which is what `key_id` records.
-- Only keys of the hook's tenant are taken. A hook registered before the audit log (0006) has
-- no entry and keeps a NULL key until it is PUT again (the lists show it: keyId null).
UPDATE hooks SET key_id = (
  SELECT audit_log.actor FROM audit_log
  JOIN api_keys ON api_keys.id = audit_log.actor AND api_keys.tenant_id = hooks.tenant_id
  WHERE audit_log.action = 'hook.put' AND audit_log.target = hooks.id AND audit_log.tenant_id = hooks.tenant_id
  ORDER BY audit_log.id DESC
  LIMIT 1
)
WHERE key_id IS NULL;
