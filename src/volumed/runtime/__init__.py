"""Adapters of the :class:`~volumed.domain.runtime.InstanceRuntime` port."""

from volumed.runtime.record import RecordOnlyRuntime

__all__ = ["RecordOnlyRuntime"]
