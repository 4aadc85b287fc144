"""Per-tenant quotas: how many volumes, how many MB in all, how small and how large one
may be; and the host's free space, which a static volume must fit in.

Limits are the configured defaults with the tenant's overrides applied. Counting is the
store's job, in the same transaction as the insert or the grow it guards
(:meth:`~volumed.domain.store.QuotaStore.insert_volume_within_quota`), so concurrent
requests cannot overshoot together; this module turns a refusal into the sentence the
API user reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from volumed.domain import errors
from volumed.domain.model import User
from volumed.domain.storage import StorageDriver
from volumed.domain.store import QuotaRefused, QuotaStore
from volumed.domain.values import QuotaLimits, QuotaOverrides, QuotaUsage

__all__ = ["QuotaReport", "QuotaService", "effective_limits", "refusal"]

MIB = 1024 * 1024


def effective_limits(defaults: QuotaLimits, overrides: QuotaOverrides | None) -> QuotaLimits:
    if overrides is None:
        return defaults
    return QuotaLimits(
        max_volumes=_pick(overrides.max_volumes, defaults.max_volumes),
        max_total_volume_mb=_pick(overrides.max_total_volume_mb, defaults.max_total_volume_mb),
        min_volume_mb=_pick(overrides.min_volume_mb, defaults.min_volume_mb),
        max_volume_mb=_pick(overrides.max_volume_mb, defaults.max_volume_mb),
    )


def _pick(override: int | None, default: int) -> int:
    return default if override is None else override


def refusal(
    limits: QuotaLimits, refused: QuotaRefused, volumes: int, size_mb: int
) -> errors.QuotaExceeded:
    """The error for a change of ``volumes`` more volumes and ``size_mb`` more MB that the
    store refused, naming the limit it hit."""
    usage = refused.usage
    if usage.volumes + volumes > limits.max_volumes:
        return errors.QuotaExceeded(
            f"Volume quota exceeded: you have {usage.volumes} of at most "
            f"{limits.max_volumes} volumes (templates included)"
        )
    return errors.QuotaExceeded(
        f"Total volume size quota exceeded: {usage.total_volume_mb} MB of "
        f"{limits.max_total_volume_mb} MB are in use, {size_mb} MB more do not fit"
    )


@dataclass(slots=True, frozen=True)
class QuotaReport:
    limits: QuotaLimits
    usage: QuotaUsage


class QuotaService:
    """Resolves a tenant's limits and checks host space for static reservations."""

    def __init__(
        self,
        store: QuotaStore,
        storage: StorageDriver,
        defaults: QuotaLimits,
        *,
        free_space_margin_mb: int = 64,
    ) -> None:
        self._store = store
        self._storage = storage
        self.defaults = defaults
        self._margin_mb = free_space_margin_mb

    async def limits_for(self, user: User) -> QuotaLimits:
        return effective_limits(self.defaults, await self._store.quota_overrides(user.id))

    async def report(self, user: User) -> QuotaReport:
        limits = await self.limits_for(user)
        return QuotaReport(limits, await self._store.quota_usage(user.id))

    async def check_free_space(self, needed_mb: int, what: str) -> None:
        """Refuse up front what the host cannot hold: ``needed_mb`` more MB must fit
        beside everything already promised to pending jobs and the safety margin."""
        promised_mb = await self._store.pending_reserved_mb()
        free_mb = self._storage.free_bytes() // MIB - promised_mb - self._margin_mb
        if needed_mb > free_mb:
            raise errors.QuotaExceeded(
                f"Not enough free disk space for {what}: it needs {needed_mb} MB and "
                f"{max(free_mb, 0)} MB can still be reserved"
            )
