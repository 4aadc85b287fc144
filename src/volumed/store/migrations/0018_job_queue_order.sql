-- The worker claims the oldest job whose lease ran out: ORDER BY lease_until_us,
-- created_at_us. Every job not yet claimed has lease_until_us 0, so with an index on
-- lease_until_us alone SQLite sorted the whole backlog again for each claim (a temporary
-- B-tree: ~1 ms per claim with a few thousand creates waiting for their formats, 16 %
-- of the server's samples under POST load, issue 15). With created_at_us in the index
-- the first row in its order is the job.
DROP INDEX volumes_jobs;
CREATE INDEX volumes_jobs ON volumes (lease_until_us, created_at_us) WHERE job IS NOT NULL;
