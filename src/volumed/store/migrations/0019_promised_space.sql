-- A static create (and a grow, a switch to static) first sums the space promised to the
-- jobs not done yet (pending_reserved_mb). It summed over every row owing a job: with a
-- backlog of formats (thousands of dynamic creates waiting, issue 15) each static create
-- read them all. Only static formats, copies and grows and reservations promise space:
-- this index holds just those rows, with what the sum reads, so the sum reads no others.
CREATE INDEX volumes_promised_space ON volumes (job, quota_policy, size_mb, pending_size_mb)
    WHERE job IS NOT NULL AND (quota_policy = 'static' OR job = 'reserve');
