-- The audit trail of volumes (issue 8). One row per state change or operation, written
-- in the transaction of the change it records. No foreign key to volumes: the events of
-- a deleted volume outlive its row (for events_retention_days).

CREATE TABLE volume_events (
    -- Hex microseconds then random hex: unique, and sorts as the events happened.
    id          TEXT PRIMARY KEY,
    volume_uuid TEXT NOT NULL,
    owner_id    TEXT NOT NULL,
    at_us       BIGINT NOT NULL,
    -- The tenant's user name, or 'worker'.
    actor       TEXT NOT NULL,
    -- create, delete, attach, detach, format, clone, grow, import, state
    action      TEXT NOT NULL,
    -- ok or error
    result      TEXT NOT NULL,
    state_from  TEXT,
    state_to    TEXT,
    message     TEXT
);

CREATE INDEX volume_events_volume ON volume_events (volume_uuid, at_us);
CREATE INDEX volume_events_at ON volume_events (at_us);
