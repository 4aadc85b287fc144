"""Lifecycle states, spelled exactly as they travel on the wire."""

from __future__ import annotations

from enum import StrEnum


class VolumeState(StrEnum):
    UNINITIALIZED = "uninitialized"
    """Scheduled to be created; the worker has not started formatting."""
    INITIALIZING = "initializing"
    """The image is being created and formatted."""
    AVAILABLE = "available"
    """Healthy and not attached: can be attached, cloned, deleted."""
    IDLE = "idle"
    """Healthy and attached to a stopped instance; can be detached."""
    MOUNTED = "mounted"
    """Mounted by a running instance."""
    BUSY = "busy"
    """A maintenance task (clone, grow, import) runs on the volume."""
    ERROR = "error"
    """A data-plane operation failed; the message says which."""
    TEMPLATE = "template"
    """Converted to an immutable template; new volumes can be made from it."""


class InstanceState(StrEnum):
    STOPPED = "stopped"
    """Not running; volumes can be attached and detached."""
    STARTING = "starting"
    """Being started; attached volumes are being mounted."""
    RUNNING = "running"
    """Running; attached volumes are mounted."""
    STOPPING = "stopping"
    """Being stopped; attached volumes are being unmounted."""


class QuotaPolicy(StrEnum):
    STATIC = "static"
    """The whole size is reserved on disk when the image is made."""
    DYNAMIC = "dynamic"
    """The image stays sparse (thin provisioning) and may overcommit."""


class AccessMode(StrEnum):
    RWO = "rwo"
    """Read-write, attached to one instance at a time."""
    ROX = "rox"
    """Read-only, attachable to many instances at once."""
    RWX = "rwx"
    """Read-write many: needs a shared file system, not offered for ext4."""
