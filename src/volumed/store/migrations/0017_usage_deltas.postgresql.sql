-- Usage counters without a hot row (PostgreSQL only; SQLite has one writer at a time).
--
-- With 0009's triggers every volume insert, delete and resize updated the tenant's
-- tenant_usage row, so a transaction that deleted one volume held that row until commit.
-- A create holds the tenant's users row (the quota lock) and then needs the usage row; a
-- delete that holds the usage row and then updates another volume needs a KEY SHARE lock
-- on the same users row for the foreign key: a deadlock, answered with 503 under load.
--
-- Now the triggers append signed deltas, which takes no lock any other transaction waits
-- for. The quota check, which already holds the tenant lock, folds the deltas into
-- tenant_usage; readers add what has not been folded yet.

CREATE TABLE tenant_usage_delta (
    id       BIGSERIAL PRIMARY KEY,
    owner_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    volumes  BIGINT NOT NULL,
    total_mb BIGINT NOT NULL
);

CREATE INDEX tenant_usage_delta_owner ON tenant_usage_delta (owner_id);

CREATE OR REPLACE FUNCTION volumes_usage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Nested IFs: OLD has no fields on INSERT, NEW none on DELETE.
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        IF OLD.deleted = 0 THEN
            INSERT INTO tenant_usage_delta (owner_id, volumes, total_mb)
            VALUES (OLD.owner_id, -1, -COALESCE(OLD.pending_size_mb, OLD.size_mb));
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF NEW.deleted = 0 THEN
            INSERT INTO tenant_usage_delta (owner_id, volumes, total_mb)
            VALUES (NEW.owner_id, 1, COALESCE(NEW.pending_size_mb, NEW.size_mb));
        END IF;
    END IF;
    RETURN NULL;
END
$$;
