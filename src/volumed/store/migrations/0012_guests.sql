-- Real guests (issue 13): which node runs an instance, how long its boot took and how
-- it last stopped (the SDK's stop_reason bitmask, exit_code, stop_code).
ALTER TABLE instances ADD COLUMN node TEXT;
ALTER TABLE instances ADD COLUMN boot_time_us BIGINT;
ALTER TABLE instances ADD COLUMN started_at_us BIGINT;
ALTER TABLE instances ADD COLUMN stopped_at_us BIGINT;
ALTER TABLE instances ADD COLUMN stop_reason INTEGER;
ALTER TABLE instances ADD COLUMN exit_code INTEGER;
ALTER TABLE instances ADD COLUMN stop_code BIGINT;
CREATE INDEX instances_node_state ON instances (node, state);
-- A stop or delete that reached a replica other than the one running the guest: the
-- owner picks it up ({"force": …, "drain_timeout_ms": …, "delete": …}).
ALTER TABLE instances ADD COLUMN stop_request TEXT;
-- Replicas that run guests, and until when each is known alive (its lease).
CREATE TABLE nodes (
    name           TEXT PRIMARY KEY,
    alive_until_us BIGINT NOT NULL
);
