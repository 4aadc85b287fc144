"""Prometheus metrics of one volumed process, in a registry of its own.

Three kinds of numbers, each gathered where it is cheapest:

* counted as things happen: requests (by method, route template and status), failed
  items (by error code), job attempts (by kind and outcome), store calls (by method);
* read from the store when scraped: volumes by state, tenants, bytes provisioned and
  used, the worker's queue (one aggregate query per scrape, nothing per request);
* the process collectors of ``prometheus_client`` (CPU, memory, file descriptors, GC).

The counted ones are plain numbers in dictionaries rather than ``prometheus_client``
``Counter``/``Histogram`` objects: those take a lock per update, and everything here is
updated and scraped on the event loop's thread, so a GET pays about 1 µs per number
instead of 2-3. ``prometheus_client`` still formats the exposition.

:class:`Metrics` knows nothing about HTTP; :mod:`volumed.metrics_http` serves it.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from volumed import __version__
from volumed.domain.states import VolumeState
from volumed.domain.storage import StorageError
from volumed.domain.values import StoreStats

__all__ = ["JOB_KINDS", "JOB_OUTCOMES", "Metrics", "Snapshot", "snapshot_source"]

log = logging.getLogger("volumed.metrics")

MIB = 1024 * 1024
JOB_KINDS = ("format", "delete", "clone", "grow", "import")
"""Job kinds whose series exist from the start (others appear when they first run)."""
JOB_OUTCOMES = ("ok", "retry", "failed", "parked", "lost")
"""``retry``: the attempt raised and the job will run again (after a back-off);
``failed``: the job gave up and left the volume in ``error``; ``parked``: it raised too
often and waits for an operator; ``lost``: another worker took it over (this one's lease
had run out). (``interrupted``, a job cut short by shutdown, appears when it first
happens.)"""

_REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
_STORE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1)

Labels = tuple[str | int, ...]
"""Label values; a number (an HTTP status) is made text when scraped, not per update."""


class _Histogram:
    """Observations by label values: per-bucket counts (the last one +Inf) and the sum,
    cumulated only when scraped. One thread (the event loop's) writes and reads it."""

    def __init__(self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]):
        self.name = name
        self.doc = doc
        self.labels = list(labels)
        self._bounds = tuple(buckets)
        self._names = (*(repr(float(b)) for b in self._bounds), "+Inf")
        self._series: dict[Labels, list[float]] = {}

    def touch(self, key: Labels) -> list[float]:
        """The series of ``key``, created at zero (so that it is exported before use)."""
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = [0.0] * (len(self._bounds) + 2)
        return series

    def observe(self, key: Labels, value: float) -> None:
        series = self._series.get(key) or self.touch(key)
        series[bisect_left(self._bounds, value)] += 1
        series[-1] += value

    def families(self) -> Iterator[Metric]:
        """The histogram. Its ``_count`` is the plain count: no counter repeats it."""
        histogram = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for key, series in self._series.items():
            cumulative, buckets = 0.0, []
            for bound, count in zip(self._names, series[:-1], strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            histogram.add_metric([str(label) for label in key], buckets, series[-1])
        yield histogram


class _Counter:
    """Counts by label values; same threading rule as :class:`_Histogram`."""

    def __init__(self, name: str, doc: str, labels: Sequence[str]) -> None:
        self.name = name
        self.doc = doc
        self.labels = list(labels)
        self.values: dict[Labels, float] = {}

    def inc(self, key: Labels, amount: float = 1.0) -> None:
        self.values[key] = self.values.get(key, 0.0) + amount

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for key, value in self.values.items():
            family.add_metric([str(label) for label in key], value)
        return family


@dataclass(slots=True, frozen=True)
class Snapshot:
    """What a scrape reads from outside the process's own counters."""

    stats: StoreStats | None
    """None when the store could not be read; ``volumed_store_up`` is then 0."""
    free_bytes: int | None
    running_jobs: int
    capacity_bytes: int | None = None
    """Size of the data directory's file system (None if it could not be read)."""


SnapshotSource = Callable[[], Awaitable[Snapshot]]


class Metrics(Collector):
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._requests = _Histogram(
            "volumed_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response",
            ["method", "route", "code"],
            _REQUEST_BUCKETS,
        )
        self._item_errors = _Counter(
            "volumed_item_errors",
            "Failed items in 200 envelopes, by error code and its name",
            ["code", "reason"],
        )
        self._transfer_bytes = _Counter(
            "volumed_transfer_bytes",
            "Archive bytes moved by imports (received) and exports (sent)",
            ["direction"],
        )
        self._transfer_bytes.inc(("import",), 0)
        self._transfer_bytes.inc(("export",), 0)
        self._in_flight = 0
        self._jobs = _Histogram(
            "volumed_job_duration_seconds",
            "Duration of job attempts, by kind and outcome",
            ["kind", "outcome"],
            _JOB_BUCKETS,
        )
        self._store = _Histogram(
            "volumed_store_operation_duration_seconds",
            "Duration of metadata-store calls, by store method",
            ["operation"],
            _STORE_BUCKETS,
        )
        self._connections_closed = _Counter(
            "volumed_connections_closed",
            "Connections the connection guard closed: idle, or over an address's share",
            ["reason"],
        )
        self._connections_closed.inc(("idle",), 0)
        self._connections_closed.inc(("over_limit",), 0)
        self._connections = 0
        for kind in JOB_KINDS:
            for outcome in JOB_OUTCOMES:
                self._jobs.touch((kind, outcome))
        self._source: SnapshotSource | None = None
        self._snapshot: Snapshot | None = None
        self.registry.register(self)

    # ------------------------------------------------------------------ as things happen

    def request_started(self) -> None:
        self._in_flight += 1

    def request_done(
        self, method: str, route: str, status: int, seconds: float, item_errors: list[int]
    ) -> None:
        """A request answered (its ``request_started`` came first)."""
        self._in_flight -= 1
        self._requests.observe((method, route, status), seconds)
        if item_errors:
            for code in item_errors:
                self._item_errors.inc((str(code), _REASONS.get(code, "other")))

    def transferred(self, direction: str, size: int) -> None:
        """``size`` archive bytes received by an import or sent by an export."""
        self._transfer_bytes.inc((direction,), size)

    def job_done(self, kind: str, seconds: float, outcome: str) -> None:
        self._jobs.observe((kind, outcome), seconds)

    def connections_swept(self, connections: int, idle_closed: int, over_limit: int) -> None:
        """What a sweep of the connection guard saw and closed."""
        self._connections = connections
        if idle_closed:
            self._connections_closed.inc(("idle",), idle_closed)
        if over_limit:
            self._connections_closed.inc(("over_limit",), over_limit)

    def time_store_calls(self, store: object) -> None:
        """Time every public coroutine method of ``store`` from now on.

        The methods are wrapped on this one instance, in place, so every caller (API,
        worker, the services of other modules) is measured without knowing it, and the
        object keeps its type.
        """
        for name, method in inspect.getmembers(store, inspect.iscoroutinefunction):
            if not name.startswith("_") and name not in _UNTIMED:
                setattr(store, name, _timed(method, self._store, (name,)))

    # ------------------------------------------------------------------ when scraped

    def read_snapshots_from(self, source: SnapshotSource) -> None:
        self._source = source

    async def render(self) -> bytes:
        """The text exposition, the store-backed gauges read afresh."""
        if self._source is not None:
            self._snapshot = await self._source()
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("volumed_build_info", "volumed version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield from self._requests.families()
        yield _gauge(
            "volumed_http_requests_in_flight",
            "Requests received and not yet answered",
            self._in_flight,
        )
        yield self._item_errors.family()
        yield self._transfer_bytes.family()
        yield from self._jobs.families()
        yield from self._store.families()
        yield self._connections_closed.family()
        yield _gauge(
            "volumed_connections", "API connections open at the last sweep", self._connections
        )
        if self._snapshot is not None:
            yield from _snapshot_families(self._snapshot)


def _gauge(name: str, doc: str, value: float) -> Metric:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], value)
    return family


def _snapshot_families(snap: Snapshot) -> Iterable[Metric]:
    yield _gauge(
        "volumed_store_up", "1 if the last scrape could read the store", snap.stats is not None
    )
    yield _gauge("volumed_worker_jobs_running", "Jobs running in this process", snap.running_jobs)
    if snap.free_bytes is not None:
        yield _gauge(
            "volumed_data_dir_free_bytes",
            "Free space on the data directory's file system",
            snap.free_bytes,
        )
    if snap.capacity_bytes is not None:
        yield _gauge(
            "volumed_data_dir_capacity_bytes",
            "Size of the data directory's file system",
            snap.capacity_bytes,
        )
    stats = snap.stats
    if stats is None:
        return
    volumes = GaugeMetricFamily("volumed_volumes", "Volumes by state", labels=["state"])
    # Every known state, zeros included, so that a state's series never disappears.
    counts = {state.value: 0 for state in VolumeState} | stats.volumes_by_state
    for state, count in counts.items():
        volumes.add_metric([state], count)
    yield volumes
    yield _gauge("volumed_tenants", "Users (tenants) known to the store", stats.tenants)
    yield _gauge(
        "volumed_volumes_provisioned_bytes",
        "Sum of the sizes of all volumes",
        stats.provisioned_mb * MIB,
    )
    yield _gauge(
        "volumed_volumes_used_bytes",
        "Sum of the space used inside the volumes' file systems",
        stats.used_mb * MIB,
    )
    yield _gauge(
        "volumed_worker_queue_depth",
        "Volumes owing background work (running jobs included)",
        stats.jobs,
    )
    yield _gauge(
        "volumed_jobs_parked",
        "Jobs that failed too often and wait for `volumed job retry`",
        stats.parked_jobs,
    )


def snapshot_source(
    stats: Callable[[], Awaitable[StoreStats]],
    free_bytes: Callable[[], int],
    running_jobs: Callable[[], int],
    capacity_bytes: Callable[[], int] | None = None,
) -> SnapshotSource:
    """What :meth:`Metrics.render` reads: a failing store or disk leaves its gauges out
    (and ``volumed_store_up`` at 0) instead of failing the scrape."""

    async def read() -> Snapshot:
        try:
            found: StoreStats | None = await stats()
        except Exception:
            log.warning("metrics: could not read the store", exc_info=True)
            found = None
        try:
            free: int | None = free_bytes()
            capacity = capacity_bytes() if capacity_bytes is not None else None
        except StorageError:
            free = capacity = None
        return Snapshot(found, free, running_jobs(), capacity)

    return read


def _reason_names() -> dict[int, str]:
    """Each per-item error code's name, from the domain error that carries it
    (``NotFound`` → ``not_found``): the ``reason`` label beside ``code``."""
    from volumed.domain.errors import VolumedError

    names: dict[int, str] = {}
    pending = list(VolumedError.__subclasses__())
    while pending:
        kind = pending.pop(0)
        pending.extend(kind.__subclasses__())
        code = getattr(kind, "code", None)
        if isinstance(code, int) and code not in names:
            names[code] = re.sub(r"(?<!^)(?=[A-Z])", "_", kind.__name__).lower()
    return names


_REASONS = _reason_names()

_UNTIMED = frozenset({"get_volume", "get_volume_row", "user_for_token"})
"""Point reads on the path of nearly every request, each a few microseconds: timing them
cost as much as the read (issue 15), and the request histogram already covers them."""


def _timed(
    method: Callable[..., Awaitable[Any]], histogram: _Histogram, key: Labels
) -> Callable[..., Awaitable[Any]]:
    clock = time.perf_counter
    observe = histogram.observe

    @functools.wraps(method)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            return await method(*args, **kwargs)
        finally:
            observe(key, clock() - started)

    return timed
