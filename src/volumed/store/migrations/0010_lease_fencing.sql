-- Lease fencing (issue 11). Every claim of a row's job (a worker's claim, the start of
-- an import, a new job) adds one to lease_epoch, so the epoch a holder read at its claim
-- is its fencing token: a holder whose lease ran out and whose job was claimed again
-- can no longer win any compare-and-set on the row, which all name lease_epoch.
--
-- A job builds the volume's new image under a name carrying its epoch
-- (<uuid>.img.e<epoch>) and first records, fenced, that this staged image is the
-- result (publish_epoch); only then renames it over <uuid>.img. Whoever claims the job
-- next finishes a recorded rename that a frozen or killed holder did not (a rename of
-- one staged file can only ever happen once).
--
-- job_parked: a job that failed max_attempts times waits for an operator
-- (`volumed job retry`) instead of being retried for ever.
ALTER TABLE volumes ADD COLUMN lease_epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE volumes ADD COLUMN publish_epoch BIGINT;
ALTER TABLE volumes ADD COLUMN job_parked INTEGER NOT NULL DEFAULT 0;
