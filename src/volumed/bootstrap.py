"""The composition root: builds the store, the storage driver, the services, the worker
and the HTTP app from one ``Settings``. Nothing is wired at import time."""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from volumed.api.app import VolumedApp
from volumed.api.attachments import AttachmentHandlers
from volumed.api.auth import Authenticator, FailureLimiter
from volumed.api.clones import CloneHandlers
from volumed.api.console import ConsoleHandlers
from volumed.api.events import EventHandlers
from volumed.api.health import HealthHandlers
from volumed.api.images import ImageHandlers
from volumed.api.instance_logs import InstanceLogHandlers
from volumed.api.instances import InstanceHandlers
from volumed.api.meta import MetaHandlers
from volumed.api.metros import MetroHandlers
from volumed.api.observe import Observer
from volumed.api.quotas import QuotaHandlers
from volumed.api.routing import Router
from volumed.api.templates import TemplateHandlers
from volumed.api.transfers import TransferHandlers
from volumed.api.updates import UpdateHandlers
from volumed.api.volumes import VolumeHandlers
from volumed.domain.attachments import AttachmentService
from volumed.domain.clones import CloneService
from volumed.domain.events import EventService
from volumed.domain.instances import InstanceLimits, InstanceService
from volumed.domain.job_waits import JobSignals, JobWaits
from volumed.domain.model import User
from volumed.domain.quotas import QuotaService
from volumed.domain.runtime import InstanceRuntime
from volumed.domain.store import NameTaken, UserStore
from volumed.domain.templates import TemplateService
from volumed.domain.tokens import new_token, token_digest
from volumed.domain.transfers import IMPORT_JOB, TransferService
from volumed.domain.updates import UpdateService
from volumed.domain.values import QuotaLimits
from volumed.domain.volumes import VolumeLimits, VolumeService
from volumed.logs import AccessLog
from volumed.metrics import Metrics, snapshot_source
from volumed.runtime.choose import choose_runtime
from volumed.runtime.images import ImageCatalog
from volumed.settings import Settings, SettingsError
from volumed.storage import Ext4ImageDriver, ImportLimits
from volumed.store.db import Database, PostgresDatabase, SqliteDatabase
from volumed.store.sql import SqlStore
from volumed.worker.reconciler import Reconciler, WorkerSettings
from volumed.worker.volume_jobs import VolumeJobs

log = logging.getLogger("volumed")

DEFAULT_USER = "default"


@dataclass(slots=True)
class Services:
    settings: Settings
    store: SqlStore
    storage: Ext4ImageDriver
    volumes: VolumeService
    worker: Reconciler
    app: VolumedApp
    lock_file: IO[str] | None = None
    instances: InstanceService | None = None
    """Set by :func:`bootstrap`; ``serve`` asks it to finish starts and stops a crash cut."""
    metrics: Metrics | None = None
    """The Prometheus instruments; None when ``metrics_port`` is 0."""
    http: VolumedApp | None = None
    """What ``serve`` serves: ``app``, once it writes the access log and the request
    metrics (the same object)."""
    runtime: InstanceRuntime | None = None
    runtime_note: str = ""
    """Which runtime and accelerator instances use, and why, for ``serve``'s log."""
    transfers: TransferService | None = None
    """``serve`` stops its running imports on SIGTERM (they do not hold shutdown up)."""

    async def close(self) -> None:
        if self.runtime is not None:
            await self.runtime.close()
        await self.store.close()
        if self.lock_file is not None:
            self.lock_file.close()


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///`` URL (``sqlite:////abs`` or ``sqlite:///rel``)."""
    raw = url.removeprefix("sqlite:///")
    return Path(raw) if raw.startswith("/") else Path(url.removeprefix("sqlite://"))


async def open_store(settings: Settings, *, migrate: bool = True) -> SqlStore:
    """Open the metadata store named by ``database_url`` (SQLite or PostgreSQL) and,
    unless told otherwise, bring its schema up to date. Raises StoreUnavailable if
    PostgreSQL cannot be reached."""
    db: Database
    if settings.is_sqlite:
        path = sqlite_path(settings.store_url)
        path.parent.mkdir(parents=True, exist_ok=True)
        db = SqliteDatabase(path, synchronous=settings.sqlite_synchronous.upper())
    else:
        db = await PostgresDatabase.connect(
            settings.store_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max
        )
    store = SqlStore(
        db,
        events_per_volume=settings.events_per_volume,
        events_retention_us=int(settings.events_retention_days * 86_400_000_000),
    )
    if migrate:
        try:
            await store.migrate()
        except BaseException:
            await store.close()
            raise
    return store


def open_storage(settings: Settings) -> Ext4ImageDriver:
    """The image driver of ``images_dir``, with the configured limits on imports. The
    server and the admin commands (``fsck``, ``restore``) build it here, so they agree
    on where images live and how they are handled."""
    return Ext4ImageDriver(
        settings.images_dir,
        import_limits=ImportLimits(
            max_depth=settings.import_max_depth,
            max_path_bytes=settings.import_max_path_bytes,
            cpu_s=settings.import_cpu_s,
        ),
        import_threads=settings.import_concurrency,
    )


async def bootstrap(settings: Settings, *, exclusive: bool = True) -> Services:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.images_dir.mkdir(parents=True, exist_ok=True)
    lock_file = _lock_data_dir(settings.data_dir) if exclusive and settings.is_sqlite else None
    store = await open_store(settings)
    storage = open_storage(settings)
    metrics = Metrics() if settings.metrics_port else None
    if metrics is not None:
        metrics.time_store_calls(store)
    signals = JobSignals()
    waits = JobWaits(store, signals, bound_s=settings.job_wait_s)
    worker = Reconciler(
        store,
        storage,
        WorkerSettings(
            lease_s=settings.worker_lease_s,
            poll_s=settings.worker_poll_s,
            max_attempts=settings.worker_max_attempts,
            retry_backoff_s=settings.worker_retry_backoff_s,
            concurrency=settings.worker_concurrency,
            # Only a lone server can tell, as it starts, that an image without a row
            # was begun by a create a crash cut short (volumed.cli.serve).
            format_ahead=settings.is_sqlite,
        ),
        on_job_done=metrics.job_done if metrics is not None else None,
        signals=signals,
    )
    quotas = QuotaService(
        store,
        storage,
        QuotaLimits(
            max_volumes=settings.quota_max_volumes,
            max_total_volume_mb=settings.quota_max_total_mb,
            min_volume_mb=settings.min_volume_mb,
            max_volume_mb=settings.max_volume_mb,
        ),
        free_space_margin_mb=settings.free_space_margin_mb,
    )
    clones = CloneService(store, storage, quotas, waits=waits, wake_worker=worker.wake)
    volumes = VolumeService(
        store,
        storage,
        VolumeLimits(
            max_volume_mb=settings.max_volume_mb,
            min_volume_mb=settings.min_volume_mb,
            free_space_margin_mb=settings.free_space_margin_mb,
        ),
        waits=waits,
        wake_worker=worker.wake,
        runner=worker,
        quotas=quotas,
        from_template=clones.create_from_template,
    )
    chosen = choose_runtime(settings)
    instances = InstanceService(
        store,
        storage,
        volumes,
        chosen.runtime,
        InstanceLimits(volumes_per_instance=settings.volumes_per_instance),
        waits=waits,
        wake_worker=worker.wake,
        node=settings.node,
    )
    attachments = AttachmentService(
        store, waits=waits, volumes_per_instance=settings.volumes_per_instance
    )
    router = Router()
    VolumeHandlers(volumes).register(router)
    InstanceHandlers(instances).register(router)
    InstanceLogHandlers(instances).register(router)
    ImageHandlers(ImageCatalog(settings.guest_images_dir.resolve())).register(router)
    AttachmentHandlers(attachments).register(router)
    transfers = TransferService(
        store,
        storage,
        waits=waits,
        worker_id=worker.worker_id,
        lease_us=worker.lease_us,
        max_imports=settings.import_concurrency,
    )
    worker.register(IMPORT_JOB, transfers.recover_import)
    TransferHandlers(transfers, idle_timeout_s=settings.import_idle_timeout_s).register(router)
    updates = UpdateService(store, storage, quotas, waits=waits, wake_worker=worker.wake)
    VolumeJobs(store, storage, max_attempts=settings.worker_max_attempts).register(worker)
    UpdateHandlers(updates).register(router)
    CloneHandlers(clones).register(router)
    templates = TemplateService(store, storage, waits=waits, wake_worker=worker.wake)
    TemplateHandlers(templates, updates).register(router)
    QuotaHandlers(quotas).register(router)
    MetroHandlers(
        public_url=settings.public_url, fallback_host=f"{settings.host}:{settings.port}"
    ).register(router)
    MetaHandlers(router).register(router)
    HealthHandlers(
        store,
        [settings.data_dir, settings.images_dir],
        storage.free_bytes,
        settings.ready_min_free_mb,
    ).register(router)
    EventHandlers(EventService(store)).register(router)
    ConsoleHandlers().register(router)
    limiter = FailureLimiter(settings.auth_failures_burst, settings.auth_failures_per_s)
    app = VolumedApp(
        router,
        Authenticator(store, limiter),
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.body_timeout_s,
        observer=Observer(metrics, AccessLog(settings.log_format)),
    )
    worker.count_requests(lambda: app.in_flight)
    services = Services(settings, store, storage, volumes, worker, app, lock_file)
    services.instances = instances
    services.runtime = chosen.runtime
    services.runtime_note = f"{chosen.runtime.name} (accelerator: {chosen.accel}; {chosen.why})"
    services.metrics = metrics
    services.transfers = transfers
    if metrics is not None:
        metrics.read_snapshots_from(
            snapshot_source(
                store.stats,
                storage.free_bytes,
                lambda: worker.running_jobs,
                storage.capacity_bytes,
            )
        )
    services.http = app
    return services


def _lock_data_dir(data_dir: Path) -> IO[str]:
    """One server per SQLite data directory: a second one would steal the first's leases."""
    handle = open(data_dir / "volumed.lock", "a+", encoding="utf-8")  # noqa: SIM115
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise SettingsError(
            f"another volumed process is using {data_dir}; SQLite serves one process "
            "(use PostgreSQL for several replicas)"
        ) from None
    return handle


async def ensure_default_user(store: UserStore, settings: Settings) -> str | None:
    """On first start create the ``default`` user and its token; return a token that
    was generated now (to be shown once), or None. Replicas starting together on one
    database race for it: the loser finds the user made and carries on."""
    try:
        return await _ensure_default_user(store, settings)
    except NameTaken:
        return await _ensure_default_user(store, settings)


async def _ensure_default_user(store: UserStore, settings: Settings) -> str | None:
    preset = settings.token
    if await store.count_users() > 0:
        if preset is not None and await store.user_for_token(token_digest(preset)) is None:
            user = await store.find_user(DEFAULT_USER)
            if user is None:
                user = User(secrets.token_hex(8), DEFAULT_USER)
                await store.create_user(user)
            await store.add_token(secrets.token_hex(8), user.id, token_digest(preset), "preset")
        return None
    user = User(secrets.token_hex(8), DEFAULT_USER)
    await store.create_user(user)
    token = preset or new_token()
    await store.add_token(secrets.token_hex(8), user.id, token_digest(token), "initial")
    _write_token_file(settings.token_file, token)
    return None if preset else token


def _write_token_file(path: Path, token: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    os.chmod(path, 0o600)
