"""Settings: read once from flags, ``VOLUMED_*`` environment variables and defaults (in
that order of precedence), validated, then passed down. No other module reads the
environment."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "VOLUMED_"


class SettingsError(ValueError):
    """A setting has a value volumed cannot use; the message names it and says why."""


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise SettingsError(f"{name} must be at least 1, got {value}")


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path(".volumed")
    database_url: str = ""
    """``sqlite:///path`` or ``postgresql://…``; empty means ``<data_dir>/volumed.db``."""
    token: str | None = field(default=None, repr=False)
    """Preset token of the ``default`` user (never logged)."""
    max_volume_mb: int = 1_048_576
    min_volume_mb: int = 1
    quota_max_volumes: int = 1024
    """Default per-tenant quota: volumes and templates (per-user overrides in the store)."""
    quota_max_total_mb: int = 4_194_304
    """Default per-tenant quota: total size of its volumes and templates, in MB."""
    public_url: str = ""
    """The URL clients reach this server by, for ``GET /v1/metros`` (default: the
    ``Host`` of each request)."""
    free_space_margin_mb: int = 64
    max_body_bytes: int = 1_048_576
    body_timeout_s: float = 30.0
    """A request body (not an import) must arrive within this time, else HTTP 408."""
    header_timeout_s: float = 10.0
    """The request line and headers must arrive within this time (granian closes the
    connection otherwise)."""
    idle_timeout_s: float = 10.0
    """A connection with no request in flight and no byte sent either way for this long
    is closed; so is one that never sends a byte."""
    max_connections: int = 4096
    """Connections served at once (and the accept queue's length); lowered at start to
    what the open-files limit leaves room for."""
    max_connections_per_address: int = 64
    """Connections one client address (an IPv6 /64) may hold; beyond it, its connections
    without a request in flight are closed, newest first."""
    auth_failures_burst: int = 20
    """Failed authentications a client address may make at once before HTTP 429; 0: no
    limit."""
    auth_failures_per_s: float = 1.0
    """How fast a client address earns back failed attempts, per second."""
    volumes_per_instance: int = 1
    sqlite_synchronous: str = "FULL"
    db_pool_min: int = 1
    """PostgreSQL: connections each replica keeps open (its pool's minimum)."""
    db_pool_max: int = 10
    """PostgreSQL: connections each replica may open at most; N replicas need
    N × db_pool_max below the server's max_connections."""
    worker_concurrency: int = 4
    worker_lease_s: float = 30.0
    worker_poll_s: float = 1.0
    job_wait_s: float = 10.0
    """How long a request waits for the data-plane work it starts (a create's format, a
    clone's copy, a grow) or finds running on a volume it needs, before it answers with
    the state at that moment (or error 24 naming the job); 0 does not wait."""
    worker_max_attempts: int = 5
    """A job that raises this often is parked until `volumed job retry`."""
    worker_retry_backoff_s: float = 1.0
    """Wait before a failed job's second attempt; doubled after each (at most 300 s)."""
    log_level: str = "info"
    log_format: str = "auto"
    """``json``, ``text``, or ``auto``: JSON unless stderr is a terminal."""
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    """Prometheus ``/metrics`` listener, apart from the API; 0 turns it off."""
    shutdown_timeout_s: float = 10.0
    """On SIGTERM/SIGINT: how long in-flight requests and running jobs may take."""
    ready_min_free_mb: int = 256
    """``/readyz`` fails when the data directory has less free space than this."""
    events_per_volume: int = 100
    """Audit-trail events kept per volume (the oldest are dropped)."""
    events_retention_days: float = 30.0
    """How long the events of a deleted volume are kept."""
    runtime: str = "auto"
    """What an instance is: ``qemu`` (a guest per instance), ``record`` (no process), or
    ``auto``: qemu when its assets are installed, else record."""
    guest_assets_dir: Path = Path(".cache/guest")
    """Where ./scripts/serve unpacks the guest kernel package (never the host's /boot)."""
    guest_accel: str = "auto"
    """QEMU accelerator: ``kvm``, ``tcg``, or ``auto`` (kvm when the CPU has VMX or SVM
    and /dev/kvm opens, else tcg)."""
    guest_boot_timeout_s: float = 120.0
    """How long a guest may take to boot and mount its volumes before its start fails."""
    guest_drain_timeout_ms: int = 10_000
    """Default time a stopping workload gets after SIGTERM before it is killed."""
    guest_console_kb: int = 1024
    """Console output kept per instance (the oldest half is dropped beyond it)."""
    node_name: str = ""
    """This server's name among replicas, recorded on the instances it runs (default:
    ``<hostname>:<port>``)."""
    import_concurrency: int = 2
    """Imports one server unpacks at once, each on a thread of the import pool; one
    more is refused (error 5) until one ends."""
    import_idle_timeout_s: float = 30.0
    """An import body that brings less than 64 KiB in this much waiting for it (silent, or
    trickling) is ended with HTTP 408."""
    import_cpu_s: float = 3600.0
    """CPU seconds one import may spend unpacking (inflating, writing files)."""
    import_max_depth: int = 256
    """Directory levels of a path in an imported archive."""
    import_max_path_bytes: int = 4095
    """Bytes of a path, or of a symbolic link's target, in an imported archive."""

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def guest_images_dir(self) -> Path:
        """Images imported with ``volumed image import`` (shared by replicas)."""
        return self.data_dir / "guest-images"

    @property
    def token_file(self) -> Path:
        return self.data_dir / "token"

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'volumed.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.store_url.startswith("sqlite:")

    def validate(self) -> Settings:
        if not 0 < self.port < 65536:
            raise SettingsError(f"port must be between 1 and 65535, got {self.port}")
        for name in (
            "max_volume_mb",
            "min_volume_mb",
            "quota_max_volumes",
            "quota_max_total_mb",
            "max_body_bytes",
            "volumes_per_instance",
            "worker_concurrency",
        ):
            _positive(name, getattr(self, name))
        _positive("db_pool_max", self.db_pool_max)
        if not 0 <= self.db_pool_min <= self.db_pool_max:
            raise SettingsError("db_pool_min must be from 0 to db_pool_max")
        if self.min_volume_mb > self.max_volume_mb:
            raise SettingsError("min_volume_mb must not exceed max_volume_mb")
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise SettingsError("public_url must start with http:// or https://")
        self._validate_clients()
        if self.free_space_margin_mb < 0:
            raise SettingsError("free_space_margin_mb must not be negative")
        if self.sqlite_synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise SettingsError("sqlite_synchronous must be FULL, EXTRA or NORMAL")
        self._validate_jobs()
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise SettingsError("log_level must be debug, info, warning or error")
        self._validate_operations()
        self._validate_guests()
        if not self.store_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise SettingsError("database_url must start with sqlite:/// or postgresql://")
        if self.token is not None and len(self.token) < 16:
            raise SettingsError("token must be at least 16 characters long")
        return self

    def _validate_jobs(self) -> None:
        """The worker and how long requests wait for it."""
        if self.worker_lease_s < 1 or self.worker_poll_s <= 0:
            raise SettingsError("worker_lease_s must be ≥ 1 and worker_poll_s > 0")
        if not 0 <= self.job_wait_s <= 3600:
            raise SettingsError("job_wait_s must be from 0 to 3600 seconds")

    def _validate_clients(self) -> None:
        """Timeouts for slow clients and the limit on failed authentication."""
        if self.body_timeout_s <= 0 or self.header_timeout_s <= 0:
            raise SettingsError("body_timeout_s and header_timeout_s must be greater than 0")
        if self.idle_timeout_s <= 0:
            raise SettingsError("idle_timeout_s must be greater than 0")
        _positive("max_connections_per_address", self.max_connections_per_address)
        if self.max_connections < self.max_connections_per_address:
            raise SettingsError("max_connections must be at least max_connections_per_address")
        if self.auth_failures_burst < 0 or self.auth_failures_per_s <= 0:
            raise SettingsError("auth_failures_burst must be ≥ 0 and auth_failures_per_s > 0")

    def _validate_operations(self) -> None:
        if self.worker_max_attempts < 1 or self.worker_retry_backoff_s < 0:
            raise SettingsError("worker_max_attempts must be ≥ 1, worker_retry_backoff_s ≥ 0")
        """Logs, metrics, probes, shutdown and the audit trail."""
        if self.log_format not in ("auto", "json", "text"):
            raise SettingsError("log_format must be auto, json or text")
        if not 0 <= self.metrics_port < 65536:
            raise SettingsError(f"metrics_port must be from 0 to 65535, got {self.metrics_port}")
        if self.metrics_port == self.port and self.metrics_host == self.host:
            raise SettingsError("metrics_port must differ from port: metrics stay off the API")
        if self.shutdown_timeout_s <= 0:
            raise SettingsError("shutdown_timeout_s must be greater than 0")
        if self.ready_min_free_mb < 0:
            raise SettingsError("ready_min_free_mb must not be negative")
        _positive("events_per_volume", self.events_per_volume)
        if self.events_retention_days <= 0:
            raise SettingsError("events_retention_days must be greater than 0")
        self._validate_imports()

    def _validate_imports(self) -> None:
        for name in ("import_concurrency", "import_max_depth", "import_max_path_bytes"):
            _positive(name, getattr(self, name))
        if self.import_idle_timeout_s <= 0 or self.import_cpu_s <= 0:
            raise SettingsError("import_idle_timeout_s and import_cpu_s must be greater than 0")

    def _validate_guests(self) -> None:
        if self.runtime not in ("auto", "qemu", "record"):
            raise SettingsError("runtime must be auto, qemu or record")
        if self.guest_accel not in ("auto", "kvm", "tcg"):
            raise SettingsError("guest_accel must be auto, kvm or tcg")
        if self.guest_boot_timeout_s <= 0 or self.guest_drain_timeout_ms < 0:
            raise SettingsError(
                "guest_boot_timeout_s must be greater than 0 and guest_drain_timeout_ms ≥ 0"
            )
        _positive("guest_console_kb", self.guest_console_kb)

    @property
    def node(self) -> str:
        return self.node_name or f"{socket.gethostname()}:{self.port}"

    @classmethod
    def load(cls, overrides: Mapping[str, Any], environ: Mapping[str, str]) -> Settings:
        """Flags (``overrides``, None meaning unset) win over the environment over defaults."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if overrides.get(f.name) is not None:
                values[f.name] = overrides[f.name]
                continue
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, raw, _CONVERTERS[f.type])
        return dataclasses.replace(cls(), **values).validate()


def _convert(name: str, raw: str, convert: Callable[[str], Any]) -> Any:
    try:
        return convert(raw)
    except ValueError:
        raise SettingsError(
            f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid value for {name}"
        ) from None


_CONVERTERS: dict[Any, Callable[[str], Any]] = {
    "str": str,
    "str | None": str,
    "int": int,
    "float": float,
    "Path": Path,
}
