"""Domain errors, each carrying the per-item API error code it maps to.

    VolumedError
    ├── NotSupported            1
    ├── TooMany                 5
    ├── Invalid                 7
    │   └── TooLong            22
    ├── NotFound                8
    ├── FailedOperation        10
    ├── WrongInstanceState     11
    ├── TimedOut               12
    ├── MissingId              13
    ├── NotAllowed             14
    ├── Attached               15
    ├── NotBoth                17
    ├── QuotaExceeded          19
    ├── NotAttached            21
    ├── AlreadyExists          23
    └── CannotBeUsed           24

The API layer turns any of these into a failed item ``{status: error, error: code,
message}`` inside an HTTP 200 envelope; it never needs to know which one it got.
"""

from __future__ import annotations


class VolumedError(Exception):
    """A per-item failure: the request was well formed, this item could not be done."""

    code: int = 0

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotSupported(VolumedError):
    """The feature exists in the API but this server does not offer it."""

    code = 1


class TooMany(VolumedError):
    """A count limit was reached (items in a batch, volumes on an instance)."""

    code = 5


class Invalid(VolumedError):
    """A well-typed value breaks a rule (range, charset, path shape, enum)."""

    code = 7


class NotFound(VolumedError):
    """The referenced volume or instance does not exist for this tenant."""

    code = 8


class FailedOperation(VolumedError):
    """The data plane failed to carry out the operation."""

    code = 10


class WrongInstanceState(VolumedError):
    """The instance is not in the state the operation needs (usually stopped)."""

    code = 11


class TimedOut(VolumedError):
    """A wait ran out of time; ``state`` is the last state seen (for the reply)."""

    code = 12

    def __init__(self, message: str, *, state: str | None = None) -> None:
        super().__init__(message)
        self.state = state


class MissingId(VolumedError):
    """Neither ``uuid`` nor ``name`` identifies the item."""

    code = 13


class NotAllowed(VolumedError):
    """A lock or an immutability rule forbids the operation."""

    code = 14


class Attached(VolumedError):
    """The volume is attached, which the operation does not allow."""

    code = 15


class NotBoth(VolumedError):
    """Both ``uuid`` and ``name`` were given where exactly one is expected."""

    code = 17


class QuotaExceeded(VolumedError):
    """A quota (count, total size, per-volume size, free disk space) would be exceeded."""

    code = 19


class NotAttached(VolumedError):
    """Detach of a volume that is not attached (to the named instance)."""

    code = 21


class TooLong(Invalid):
    """A name or tag is longer than allowed."""

    code = 22


class AlreadyExists(VolumedError):
    """The name is already taken within the tenant."""

    code = 23


class CannotBeUsed(VolumedError):
    """The volume's state does not allow the operation (busy, error, template, …)."""

    code = 24
