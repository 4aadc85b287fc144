-- Updates, clones, templates and quotas (issue 4).

-- Per-user quota overrides. A NULL column means "use the configured default".
CREATE TABLE user_quotas (
    user_id             TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    max_volumes         BIGINT,
    max_total_volume_mb BIGINT,
    min_volume_mb       BIGINT,
    max_volume_mb       BIGINT
);

-- The volume (or template) a volume was cloned from. While the clone's job runs, the
-- source cannot be deleted.
ALTER TABLE volumes ADD COLUMN clone_source TEXT;
CREATE INDEX volumes_clone_source ON volumes (clone_source) WHERE clone_source IS NOT NULL;

-- The size a volume will have once its grow job is done: counted by quotas and by the
-- host space promised to static volumes while the job is pending.
ALTER TABLE volumes ADD COLUMN pending_size_mb BIGINT;

-- Where deleted volumes stood in the list order, so that a listing whose `from` cursor
-- was deleted meanwhile carries on after it. Pruned after a day.
CREATE TABLE volume_tombstones (
    uuid          TEXT PRIMARY KEY,
    owner_id      TEXT NOT NULL,
    name          TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    deleted_at_us BIGINT NOT NULL
);
CREATE INDEX volume_tombstones_deleted ON volume_tombstones (deleted_at_us);
