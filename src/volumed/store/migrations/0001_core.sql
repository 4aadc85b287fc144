-- Core schema. Written in the SQL that SQLite and PostgreSQL share: TEXT keys,
-- BIGINT microsecond timestamps, INTEGER 0/1 booleans, JSON kept as TEXT.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    created_at_us BIGINT NOT NULL
);

CREATE TABLE tokens (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash    TEXT NOT NULL UNIQUE,
    label         TEXT NOT NULL DEFAULT '',
    created_at_us BIGINT NOT NULL
);

CREATE TABLE volumes (
    uuid           TEXT PRIMARY KEY,
    owner_id       TEXT NOT NULL REFERENCES users (id),
    name           TEXT NOT NULL,
    state          TEXT NOT NULL,
    size_mb        BIGINT NOT NULL,
    persistent     INTEGER NOT NULL,
    created_at_us  BIGINT NOT NULL,
    quota_policy   TEXT NOT NULL,
    access_mode    TEXT NOT NULL,
    delete_lock    INTEGER NOT NULL DEFAULT 0,
    free_mb        BIGINT,
    filesystem     TEXT NOT NULL DEFAULT 'ext4',
    tags           TEXT NOT NULL DEFAULT '[]',
    message        TEXT,
    -- 1 once a delete is accepted: the row is invisible and its name is free again,
    -- but it stays until the image is gone so that no image is ever left without a row.
    deleted        INTEGER NOT NULL DEFAULT 0,
    -- Background work owed on this volume (format, delete, clone, grow, ...), claimed
    -- by one worker at a time through the lease columns.
    job            TEXT,
    job_args       TEXT,
    lease_owner    TEXT,
    lease_until_us BIGINT NOT NULL DEFAULT 0,
    job_attempts   INTEGER NOT NULL DEFAULT 0
);

CREATE UNIQUE INDEX volumes_owner_name ON volumes (owner_id, name) WHERE deleted = 0;
CREATE INDEX volumes_owner_created ON volumes (owner_id, created_at_us, uuid);
CREATE INDEX volumes_jobs ON volumes (lease_until_us) WHERE job IS NOT NULL;

CREATE TABLE instances (
    uuid          TEXT PRIMARY KEY,
    owner_id      TEXT NOT NULL REFERENCES users (id),
    name          TEXT NOT NULL,
    state         TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    image         TEXT NOT NULL,
    memory_mb     BIGINT NOT NULL,
    vcpus         INTEGER NOT NULL,
    args          TEXT NOT NULL DEFAULT '[]',
    env           TEXT NOT NULL DEFAULT '{}',
    tags          TEXT NOT NULL DEFAULT '[]'
);

CREATE UNIQUE INDEX instances_owner_name ON instances (owner_id, name);
CREATE INDEX instances_owner_created ON instances (owner_id, created_at_us, uuid);

CREATE TABLE attachments (
    volume_uuid   TEXT NOT NULL REFERENCES volumes (uuid),
    instance_uuid TEXT NOT NULL REFERENCES instances (uuid),
    at            TEXT NOT NULL,
    readonly      INTEGER NOT NULL,
    attached_at_us BIGINT NOT NULL,
    PRIMARY KEY (volume_uuid, instance_uuid)
);

CREATE UNIQUE INDEX attachments_instance_at ON attachments (instance_uuid, at);
CREATE INDEX attachments_instance ON attachments (instance_uuid);
