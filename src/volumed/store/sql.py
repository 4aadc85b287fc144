"""The SQL store: metadata in SQLite or PostgreSQL, one statement (or one short
transaction) per transition.

Every transition is a compare-and-set (an ``UPDATE … WHERE`` on the expected state) or
one short transaction over the rows it changes. The SQL is written once, in the dialect
both databases share (``?`` placeholders, translated by :mod:`volumed.store.db`); the few
statements that must differ branch on ``db.dialect``:

* job claiming takes the oldest expired job ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
  replicas claiming at once take different jobs;
* count-then-write transactions (quotas) lock the tenant's ``users`` row first on
  PostgreSQL (``_lock_tenant``); SQLite's ``BEGIN IMMEDIATE`` serialises them anyway;
* tag membership uses ``instr`` on SQLite and ``strpos`` on PostgreSQL.

Transactions that take several rows take the instance before its volumes, so
transactions of replicas wait for each other instead of deadlocking.

On SQLite a transaction block never suspends between its statements, so it never
interleaves with another request's statements (blocks ending in the same loop turn share
one COMMIT: group commit, :mod:`volumed.store.db`); SQLite's own locking serialises us
against the admin CLI.

The SQL lives in one module per role (its room): :mod:`~volumed.store.users`,
:mod:`~volumed.store.volumes`, :mod:`~volumed.store.jobs`,
:mod:`~volumed.store.maintenance`, :mod:`~volumed.store.instances`,
:mod:`~volumed.store.attachments`, :mod:`~volumed.store.quotas`,
:mod:`~volumed.store.events` and :mod:`~volumed.store.schema`, over the shared
:mod:`~volumed.store._base` and the row mapping of :mod:`~volumed.store._rows`.
"""

from __future__ import annotations

from volumed.store.attachments import SqlAttachments
from volumed.store.events import SqlEvents
from volumed.store.instances import SqlInstances
from volumed.store.jobs import SqlJobs
from volumed.store.maintenance import SqlMaintenance
from volumed.store.quotas import SqlQuotas
from volumed.store.schema import SqlSchema
from volumed.store.users import SqlUsers
from volumed.store.volumes import SqlVolumes

__all__ = ["SqlStore"]


class SqlStore(
    SqlSchema,
    SqlUsers,
    SqlVolumes,
    SqlJobs,
    SqlMaintenance,
    SqlInstances,
    SqlAttachments,
    SqlQuotas,
    SqlEvents,
):
    """The :class:`~volumed.domain.store.Store` over a :class:`~volumed.store.db.Database`:
    one object made of the rooms, each the SQL of one role (see :mod:`volumed.store`)."""
