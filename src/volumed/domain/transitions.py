"""The one table that says which operation is allowed in which volume state.

Service functions ask :func:`check` before they act, and the store's compare-and-set
statements take their expected states from :func:`states_allowing`, so the rules live
here and nowhere else. An operation either leads to a target state or is refused with
the domain error named in the table.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from volumed.domain import errors
from volumed.domain.states import InstanceState as I  # noqa: E741
from volumed.domain.states import VolumeState as S


class Op(StrEnum):
    ATTACH = "attach"
    """Attach to a stopped instance (one attachment at a time)."""
    ATTACH_SHARED = "attach_shared"
    """Attach a read-only-many (rox) volume to one more instance."""
    DETACH = "detach"
    """Detach from a stopped instance."""
    MOUNT = "mount"
    """An instance the volume is attached to starts."""
    UNMOUNT = "unmount"
    """An instance the volume is attached to stops."""
    DELETE = "delete"
    """Remove the volume and its image."""
    CLONE = "clone"
    """Copy the image into a new volume; the source is busy meanwhile."""
    MAKE_TEMPLATE = "make_template"
    """Turn the volume into an immutable template."""
    GROW = "grow"
    """Grow the image and its file system."""
    IMPORT = "import"
    """Replace the file system's contents from an archive."""
    EXPORT = "export"
    """Read the file system's contents into an archive."""
    UPDATE = "update"
    """Change metadata: tags, delete lock."""
    RESERVE = "reserve"
    """Switch the quota policy: reserve (static) or release (dynamic) the image's host space."""
    DELETE_TEMPLATE = "delete_template"
    """Remove a template and its image (through ``/v1/volumes/templates``)."""
    RELEASE = "release"
    """The instance the volume is attached to is deleted: detach, or delete if not persistent."""


class _Keep:
    """Target marker: the operation leaves the state as it is."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = _Keep()
GONE: Final = None
"""Target marker: the volume ceases to exist."""

Target = S | _Keep | None
Outcome = Target | type[errors.VolumedError]

_BUSY_LIKE = (S.UNINITIALIZED, S.INITIALIZING, S.BUSY)

# Each row lists every state; a missing state is a bug caught by the tests.
_TABLE: Final[dict[Op, dict[S, Outcome]]] = {
    Op.ATTACH: {
        S.AVAILABLE: S.IDLE,
        S.IDLE: errors.Attached,
        S.MOUNTED: errors.Attached,
        **{s: errors.CannotBeUsed for s in _BUSY_LIKE},
        S.ERROR: errors.CannotBeUsed,
        S.TEMPLATE: errors.CannotBeUsed,
    },
    Op.ATTACH_SHARED: {
        S.AVAILABLE: S.IDLE,
        S.IDLE: KEEP,
        S.MOUNTED: KEEP,
        **{s: errors.CannotBeUsed for s in _BUSY_LIKE},
        S.ERROR: errors.CannotBeUsed,
        S.TEMPLATE: errors.CannotBeUsed,
    },
    Op.DETACH: {
        S.AVAILABLE: errors.NotAttached,
        # The target is worked out from the attachments left (available or idle).
        S.IDLE: KEEP,
        # A mounted rwo volume sits on a running instance; a shared one may still
        # be detached from another, stopped instance (checked per instance).
        S.MOUNTED: KEEP,
        **{s: errors.CannotBeUsed for s in _BUSY_LIKE},
        S.ERROR: errors.CannotBeUsed,
        S.TEMPLATE: errors.CannotBeUsed,
    },
    Op.MOUNT: {
        S.IDLE: S.MOUNTED,
        S.MOUNTED: KEEP,
        S.AVAILABLE: errors.NotAttached,
        **{s: errors.CannotBeUsed for s in _BUSY_LIKE},
        S.ERROR: errors.CannotBeUsed,
        S.TEMPLATE: errors.CannotBeUsed,
    },
    Op.UNMOUNT: {
        S.MOUNTED: S.IDLE,
        S.IDLE: KEEP,
        S.AVAILABLE: KEEP,
        **{s: KEEP for s in _BUSY_LIKE},
        S.ERROR: KEEP,
        S.TEMPLATE: KEEP,
    },
    Op.DELETE: {
        S.AVAILABLE: GONE,
        S.IDLE: errors.Attached,
        S.MOUNTED: errors.Attached,
        # A format no worker holds is cancelled; a running one (or a clone being
        # copied in) is waited for by the service, then the volume is deleted.
        S.UNINITIALIZED: GONE,
        S.INITIALIZING: GONE,
        S.BUSY: errors.CannotBeUsed,
        S.ERROR: GONE,
        # Templates are deleted through /v1/volumes/templates.
        S.TEMPLATE: errors.CannotBeUsed,
    },
    Op.CLONE: {
        S.AVAILABLE: S.BUSY,
        S.IDLE: S.BUSY,
        # Allowed only when every mount is read-only (checked by the service).
        S.MOUNTED: KEEP,
        **{s: errors.CannotBeUsed for s in _BUSY_LIKE},
        S.ERROR: errors.CannotBeUsed,
        S.TEMPLATE: KEEP,
    },
    Op.MAKE_TEMPLATE: {
        S.AVAILABLE: S.TEMPLATE,
        S.IDLE: errors.Attached,
        S.MOUNTED: errors.Attached,
        **{s: errors.CannotBeUsed for s in _BUSY_LIKE},
        S.ERROR: errors.CannotBeUsed,
        S.TEMPLATE: errors.CannotBeUsed,
    },
    Op.GROW: {
        S.AVAILABLE: S.BUSY,
        S.IDLE: S.BUSY,
        S.MOUNTED: errors.CannotBeUsed,
        **{s: errors.CannotBeUsed for s in _BUSY_LIKE},
        S.ERROR: errors.CannotBeUsed,
        S.TEMPLATE: errors.NotAllowed,
    },
    Op.IMPORT: {
        S.AVAILABLE: S.BUSY,
        S.IDLE: errors.Attached,
        S.MOUNTED: errors.Attached,
        **{s: errors.CannotBeUsed for s in _BUSY_LIKE},
        S.ERROR: errors.CannotBeUsed,
        S.TEMPLATE: errors.NotAllowed,
    },
    Op.EXPORT: {
        S.AVAILABLE: KEEP,
        S.IDLE: KEEP,
        S.MOUNTED: errors.CannotBeUsed,
        **{s: errors.CannotBeUsed for s in _BUSY_LIKE},
        S.ERROR: errors.CannotBeUsed,
        S.TEMPLATE: KEEP,
    },
    Op.UPDATE: {s: KEEP for s in S},
    Op.RESERVE: {
        S.AVAILABLE: S.BUSY,
        S.IDLE: S.BUSY,
        # A running guest writes the image: unused blocks cannot be released under it.
        S.MOUNTED: errors.CannotBeUsed,
        **{s: errors.CannotBeUsed for s in _BUSY_LIKE},
        S.ERROR: errors.CannotBeUsed,
        S.TEMPLATE: errors.NotAllowed,
    },
    Op.DELETE_TEMPLATE: {
        S.TEMPLATE: GONE,
        # Only templates are found through /v1/volumes/templates; listed for completeness.
        **{s: errors.CannotBeUsed for s in S if s is not S.TEMPLATE},
    },
    Op.RELEASE: {
        # The target is worked out from the attachments left and ``persistent``.
        S.IDLE: KEEP,
        S.MOUNTED: KEEP,
        # Unreachable while attached; listed so the row covers every state.
        S.AVAILABLE: KEEP,
        # A job holds the row; the instance delete waits for it or is refused.
        **{s: errors.CannotBeUsed for s in _BUSY_LIKE},
        # A broken volume must not keep its instance alive.
        S.ERROR: KEEP,
        S.TEMPLATE: errors.CannotBeUsed,
    },
}


def outcome(op: Op, state: S) -> Outcome:
    """The table's entry: a target state, ``KEEP``, ``GONE``, or an error class."""
    return _TABLE[op][state]


def is_allowed(op: Op, state: S) -> bool:
    entry = _TABLE[op][state]
    return not (isinstance(entry, type) and issubclass(entry, errors.VolumedError))


def states_allowing(op: Op) -> tuple[S, ...]:
    """Every state in which ``op`` may start: the expected states of its compare-and-set."""
    return tuple(s for s in S if is_allowed(op, s))


def refusal(op: Op, state: S, volume: str) -> errors.VolumedError:
    """The error for attempting ``op`` on a volume in ``state`` (which must be refused)."""
    entry = _TABLE[op][state]
    if not (isinstance(entry, type) and issubclass(entry, errors.VolumedError)):
        raise ValueError(f"{op} is allowed in state {state}")
    return entry(_MESSAGES.get(entry, _DEFAULT).format(volume=volume, op=op.value, state=state))


_DEFAULT = "Volume {volume} cannot be used for {op} while it is {state}"
_MESSAGES: Final[dict[type[errors.VolumedError], str]] = {
    errors.Attached: "Volume {volume} is attached to an instance ({state}); {op} needs it detached",
    errors.NotAttached: "Volume {volume} is not attached to any instance",
    errors.NotAllowed: "Volume {volume} is a template and cannot be changed by {op}",
}


def check(op: Op, state: S, volume: str) -> Target:
    """Return the target state of ``op`` from ``state``, or raise its refusal."""
    if not is_allowed(op, state):
        raise refusal(op, state, volume)
    entry = _TABLE[op][state]
    assert not isinstance(entry, type)
    return entry


# --------------------------------------------------------------------------- instances
# The instance half of the table. An instance's volumes follow it through the volume
# rows above: START mounts them (Op.MOUNT), the end of a stop unmounts them
# (Op.UNMOUNT), DELETE releases them (Op.RELEASE).


class InstanceOp(StrEnum):
    START = "start"
    """Boot the instance; its volumes become mounted."""
    STOP = "stop"
    """Shut the instance down; its volumes go back to idle."""
    DELETE = "delete"
    """Remove the instance; a running one is stopped first."""
    CHANGE_VOLUMES = "change_volumes"
    """Attach a volume to it or detach one from it."""
    EXIT = "exit"
    """Its guest ended by itself (the workload exited, the guest crashed, or its node
    is gone); its volumes go back to idle."""


InstanceTarget = I | _Keep | None
InstanceEntry = InstanceTarget | type[errors.VolumedError]

_INSTANCE_TABLE: Final[dict[InstanceOp, dict[I, InstanceEntry]]] = {
    InstanceOp.START: {
        I.STOPPED: I.STARTING,
        # Starting what already runs is a no-op, as for the hosted service's clients.
        I.STARTING: KEEP,
        I.RUNNING: KEEP,
        I.STOPPING: errors.WrongInstanceState,
    },
    InstanceOp.STOP: {
        I.RUNNING: I.STOPPING,
        I.STOPPING: KEEP,
        I.STOPPED: KEEP,
        I.STARTING: errors.WrongInstanceState,
    },
    InstanceOp.DELETE: {
        I.STOPPED: GONE,
        I.RUNNING: I.STOPPING,
        I.STARTING: errors.WrongInstanceState,
        I.STOPPING: errors.WrongInstanceState,
    },
    InstanceOp.EXIT: {
        I.RUNNING: I.STOPPED,
        # A workload that ends at once may end before the start is recorded.
        I.STARTING: I.STOPPED,
        # A stop in progress records how the guest ended itself.
        I.STOPPING: KEEP,
        I.STOPPED: KEEP,
    },
    InstanceOp.CHANGE_VOLUMES: {
        I.STOPPED: KEEP,
        I.STARTING: errors.WrongInstanceState,
        I.RUNNING: errors.WrongInstanceState,
        I.STOPPING: errors.WrongInstanceState,
    },
}


def instance_outcome(op: InstanceOp, state: I) -> InstanceEntry:
    return _INSTANCE_TABLE[op][state]


def instance_is_allowed(op: InstanceOp, state: I) -> bool:
    entry = _INSTANCE_TABLE[op][state]
    return not (isinstance(entry, type) and issubclass(entry, errors.VolumedError))


def instance_states_allowing(op: InstanceOp) -> tuple[I, ...]:
    """Every instance state in which ``op`` may happen."""
    return tuple(s for s in I if instance_is_allowed(op, s))


def instance_states_leading(op: InstanceOp, target: I | None) -> tuple[I, ...]:
    """The states from which ``op`` leads to ``target`` (a state, or ``GONE``): the
    expected states of the compare-and-set that performs that step."""
    return tuple(s for s in I if _INSTANCE_TABLE[op][s] is target)


def check_instance(op: InstanceOp, state: I, instance: str) -> InstanceTarget:
    """The target state of ``op`` on an instance in ``state`` (``KEEP``, ``GONE`` or a
    state), or raise the refusal."""
    entry = _INSTANCE_TABLE[op][state]
    if isinstance(entry, type) and issubclass(entry, errors.VolumedError):
        raise entry(
            f"Instance {instance} is {state}; {op.value.replace('_', ' ')} needs it "
            + ("stopped" if op is not InstanceOp.STOP else "running")
        )
    assert not isinstance(entry, type)
    return entry
