-- Per-tenant usage counters (issue 15): see 0009_tenant_usage.sqlite.sql, which this
-- file mirrors in PostgreSQL's trigger dialect.

CREATE TABLE tenant_usage (
    owner_id TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    volumes  BIGINT NOT NULL DEFAULT 0,
    total_mb BIGINT NOT NULL DEFAULT 0
);

INSERT INTO tenant_usage (owner_id, volumes, total_mb)
SELECT owner_id, count(*), COALESCE(SUM(COALESCE(pending_size_mb, size_mb)), 0)
FROM volumes WHERE deleted = 0 GROUP BY owner_id;

CREATE FUNCTION volumes_usage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Nested IFs: OLD has no fields on INSERT, NEW none on DELETE.
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        IF OLD.deleted = 0 THEN
            UPDATE tenant_usage
            SET volumes = volumes - 1,
                total_mb = total_mb - COALESCE(OLD.pending_size_mb, OLD.size_mb)
            WHERE owner_id = OLD.owner_id;
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF NEW.deleted = 0 THEN
            INSERT INTO tenant_usage AS u (owner_id, volumes, total_mb)
            VALUES (NEW.owner_id, 1, COALESCE(NEW.pending_size_mb, NEW.size_mb))
            ON CONFLICT (owner_id) DO UPDATE
            SET volumes = u.volumes + 1, total_mb = u.total_mb + EXCLUDED.total_mb;
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER volumes_usage_insert AFTER INSERT ON volumes
FOR EACH ROW EXECUTE FUNCTION volumes_usage();

CREATE TRIGGER volumes_usage_update AFTER UPDATE OF deleted, size_mb, pending_size_mb ON volumes
FOR EACH ROW WHEN (
    (OLD.deleted = 0) IS DISTINCT FROM (NEW.deleted = 0)
    OR COALESCE(OLD.pending_size_mb, OLD.size_mb) IS DISTINCT FROM COALESCE(NEW.pending_size_mb, NEW.size_mb)
) EXECUTE FUNCTION volumes_usage();

CREATE TRIGGER volumes_usage_delete AFTER DELETE ON volumes
FOR EACH ROW EXECUTE FUNCTION volumes_usage();
