-- Per-tenant usage counters (issue 15): the volume count and total MB that quota checks
-- and GET /v1/users/quotas read, instead of a scan over the tenant's volumes. Triggers
-- keep them in the same transaction as every change to a volume row, so no write path
-- can forget them. A row counts while it is not deleted; its size is the size it will
-- have once a pending grow is done. PostgreSQL has the same in 0009_tenant_usage.postgresql.sql.

CREATE TABLE tenant_usage (
    owner_id TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    volumes  BIGINT NOT NULL DEFAULT 0,
    total_mb BIGINT NOT NULL DEFAULT 0
);

INSERT INTO tenant_usage (owner_id, volumes, total_mb)
SELECT owner_id, count(*), COALESCE(SUM(COALESCE(pending_size_mb, size_mb)), 0)
FROM volumes WHERE deleted = 0 GROUP BY owner_id;

CREATE TRIGGER volumes_usage_insert AFTER INSERT ON volumes WHEN NEW.deleted = 0
BEGIN
    INSERT INTO tenant_usage (owner_id, volumes, total_mb)
    VALUES (NEW.owner_id, 1, COALESCE(NEW.pending_size_mb, NEW.size_mb))
    ON CONFLICT (owner_id) DO UPDATE
    SET volumes = volumes + 1, total_mb = total_mb + excluded.total_mb;
END;

CREATE TRIGGER volumes_usage_update AFTER UPDATE OF deleted, size_mb, pending_size_mb ON volumes
WHEN (OLD.deleted = 0) <> (NEW.deleted = 0)
  OR COALESCE(OLD.pending_size_mb, OLD.size_mb) <> COALESCE(NEW.pending_size_mb, NEW.size_mb)
BEGIN
    UPDATE tenant_usage
    SET volumes = volumes - 1, total_mb = total_mb - COALESCE(OLD.pending_size_mb, OLD.size_mb)
    WHERE owner_id = OLD.owner_id AND OLD.deleted = 0;
    INSERT INTO tenant_usage (owner_id, volumes, total_mb)
    SELECT NEW.owner_id, 1, COALESCE(NEW.pending_size_mb, NEW.size_mb) WHERE NEW.deleted = 0
    ON CONFLICT (owner_id) DO UPDATE
    SET volumes = volumes + 1, total_mb = total_mb + excluded.total_mb;
END;

CREATE TRIGGER volumes_usage_delete AFTER DELETE ON volumes WHEN OLD.deleted = 0
BEGIN
    UPDATE tenant_usage
    SET volumes = volumes - 1, total_mb = total_mb - COALESCE(OLD.pending_size_mb, OLD.size_mb)
    WHERE owner_id = OLD.owner_id;
END;
