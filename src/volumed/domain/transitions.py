"""The one table of every state change, for volumes and for instances.

It has two halves:

* **operations** (:class:`Op`, :class:`InstanceOp`): what a user starts. For each state the
  table gives the target state, ``KEEP``, ``GONE``, or the domain error that refuses it.
  Service functions ask :func:`check` / :func:`check_instance` before they act.
* **endings** (:class:`End`, :class:`InstanceEnd`): how the work an operation leaves
  behind ends (a job done or failed, a guest booted or stopped, a job parked), and what
  follows from it (a volume whose last attachment went). For each state the table gives
  the target, ``KEEP``, ``RESTORE`` (the state the volume had when its job began),
  ``GONE``, or ``NEVER`` (the ending cannot happen from that state). The worker, the
  import and the instance service ask :func:`step` / :func:`instance_step` which states
  to expect and which to write.

The store's compare-and-set statements take their expected and target states from here
(:class:`Step`), so no other module chooses a state.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Generic, TypeVar

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
    COPY_TEMPLATE = "copy_template"
    """Make a new volume from this template (``POST /v1/volumes`` with ``template``)."""


class _Marker:
    """A cell of the table that is not a state."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


KEEP: Final = _Marker("KEEP")
"""Target marker: the state stays as it is."""
RESTORE: Final = _Marker("RESTORE")
"""Target marker (endings): the state the volume had when its job began."""
NEVER: Final = _Marker("NEVER")
"""Cell marker (endings): the ending does not happen from this state."""
GONE: Final = None
"""Target marker: the volume (or instance) ceases to exist."""

Target = S | _Marker | None
Outcome = Target | type[errors.VolumedError]

INITIAL: Final = S.UNINITIALIZED
"""The state a new volume is inserted in (owing its format or its copy)."""
INITIAL_INSTANCE: Final = I.STOPPED
"""The state a new instance is inserted in."""

_BEING_MADE = (S.UNINITIALIZED, S.INITIALIZING)
_BUSY_LIKE = (*_BEING_MADE, S.BUSY)

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
    Op.COPY_TEMPLATE: {
        # The template is only read: many copies may be made of it at once.
        S.TEMPLATE: KEEP,
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
    message = _REASONS.get((op, state)) or _MESSAGES.get(entry, _DEFAULT)
    return entry(message.format(volume=volume, op=op.value, state=state))


_DEFAULT = "Volume {volume} cannot be used for {op} while it is {state}"
_MESSAGES: Final[dict[type[errors.VolumedError], str]] = {
    errors.Attached: "Volume {volume} is attached to an instance ({state}); {op} needs it detached",
    errors.NotAttached: "Volume {volume} is not attached to any instance",
    errors.NotAllowed: "Volume {volume} is a template and cannot be changed by {op}",
}
_OFFLINE = (
    "Volume {volume} is mounted by a running instance; ext4 volumes are changed offline "
    "here (the image is in use), so stop the instance to "
)
_REASONS: Final[dict[tuple[Op, S], str]] = {
    # Cells whose refusal says more than its error class: what to do instead.
    (Op.GROW, S.MOUNTED): _OFFLINE + "grow",
    (Op.RESERVE, S.MOUNTED): _OFFLINE + "change its quota policy",
    (Op.MAKE_TEMPLATE, S.TEMPLATE): "Volume {volume} is a template already",
    **{
        (Op.COPY_TEMPLATE, s): "Volume {volume} is not a template: make it one with "
        "POST /v1/volumes/templates, or copy it with POST /v1/volumes/clone"
        for s in S
        if s is not S.TEMPLATE
    },
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


InstanceTarget = I | _Marker | None
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


# =========================================================================== endings
# The second half: how the work an operation leaves behind ends. ``NEVER`` cells are
# the states the ending's compare-and-set does not expect (it loses there).


class End(StrEnum):
    """An ending on a volume row: a job's, or what follows from another row's change."""

    FORMAT_STARTED = "format_started"
    """A worker claimed the format job and makes the image."""
    FORMATTED = "formatted"
    """The format job is done (a volume made with its instance is attached: ``idle``)."""
    FORMAT_FAILED = "format_failed"
    """The format job gave up (out of host space, or failed too often)."""
    COPY_STARTED = "copy_started"
    """A worker claimed the clone job (on the new volume's row) and copies the image."""
    COPIED = "copied"
    """The clone job is done."""
    COPY_FAILED = "copy_failed"
    """The clone job gave up: the new volume is in error, without an image."""
    SOURCE_RETURNED = "source_returned"
    """A clone job ended (either way): the source it made busy is itself again."""
    GROWN = "grown"
    """The grow job is done: the new size, the state from before."""
    GROW_UNDONE = "grow_undone"
    """The grow job ran out of host space: the file system is untouched."""
    GROW_FAILED = "grow_failed"
    """The grow job failed too often."""
    POLICY_SWITCHED = "policy_switched"
    """The reserve or release job is done: the new quota policy, the state from before."""
    POLICY_KEPT = "policy_kept"
    """The reserve job ran out of host space: the reservation was handed back."""
    POLICY_FAILED = "policy_failed"
    """The reserve or release job failed too often."""
    IMPORT_ENDED = "import_ended"
    """An import is handed back, applied or not (or rolled back by the worker after
    the process streaming it died): the image in place is complete."""
    IMPORT_LOST = "import_lost"
    """The worker rolled an interrupted import back and found no usable image."""
    DELETED = "deleted"
    """The delete job (or the request) removed the image: the row goes."""
    RETRIED = "retried"
    """An attempt failed; the job is claimable again after a back-off."""
    PARKED = "parked"
    """The job failed too often and waits for an operator."""
    UNPARKED = "unparked"
    """An operator ran ``volumed job retry``."""
    ORPHANED = "orphaned"
    """Its last attachment went (a detach, its instance deleted)."""
    IMAGE_MISSING = "image_missing"
    """``volumed fsck --repair`` found no image for a volume no job holds."""


EndTarget = S | _Marker | None

_NEVER: Final[dict[S, EndTarget]] = {s: NEVER for s in S}
_ALL_KEEP: Final[dict[S, EndTarget]] = {s: KEEP for s in S}

_ENDS: Final[dict[End, dict[S, EndTarget]]] = {
    End.FORMAT_STARTED: {**_NEVER, S.UNINITIALIZED: S.INITIALIZING, S.INITIALIZING: KEEP},
    End.FORMATTED: {**_NEVER, S.INITIALIZING: S.AVAILABLE},
    End.FORMAT_FAILED: {**_NEVER, **{s: S.ERROR for s in _BEING_MADE}},
    End.COPY_STARTED: {**_NEVER, S.UNINITIALIZED: S.INITIALIZING, S.INITIALIZING: KEEP},
    End.COPIED: {**_NEVER, **{s: S.AVAILABLE for s in _BEING_MADE}},
    End.COPY_FAILED: {**_NEVER, **{s: S.ERROR for s in _BEING_MADE}},
    End.SOURCE_RETURNED: {**_NEVER, S.BUSY: RESTORE},
    End.GROWN: {**_NEVER, S.BUSY: RESTORE},
    End.GROW_UNDONE: {**_NEVER, S.BUSY: RESTORE},
    End.GROW_FAILED: {**_NEVER, S.BUSY: S.ERROR},
    End.POLICY_SWITCHED: {**_NEVER, S.BUSY: RESTORE},
    End.POLICY_KEPT: {**_NEVER, S.BUSY: RESTORE},
    End.POLICY_FAILED: {**_NEVER, S.BUSY: S.ERROR},
    End.IMPORT_ENDED: {**_NEVER, S.BUSY: S.AVAILABLE},
    End.IMPORT_LOST: {**_NEVER, S.BUSY: S.ERROR},
    End.DELETED: {s: GONE for s in S},
    End.RETRIED: _ALL_KEEP,
    End.PARKED: _ALL_KEEP,
    End.UNPARKED: _ALL_KEEP,
    # Only attached volumes have a last attachment; a shared volume still mounted by a
    # running instance keeps another one, so the mounted cell is reached only by an
    # instance delete that also unmounts it.
    End.ORPHANED: {**_NEVER, S.IDLE: S.AVAILABLE, S.MOUNTED: S.AVAILABLE},
    End.IMAGE_MISSING: {s: S.ERROR for s in S},
}

_RESTORED_BY: Final[dict[End, tuple[Op, ...]]] = {
    End.SOURCE_RETURNED: (Op.CLONE,),
    End.GROWN: (Op.GROW,),
    End.GROW_UNDONE: (Op.GROW,),
    End.POLICY_SWITCHED: (Op.RESERVE,),
    End.POLICY_KEPT: (Op.RESERVE,),
}
"""For each ``RESTORE`` ending, the operations whose job it ends: the state restored is
one from which such an operation led to ``busy``."""

_BY_JOBS: Final = tuple(e for e in End if e not in (End.DELETED, End.ORPHANED, End.IMAGE_MISSING))

TRANSITIONAL: Final[frozenset[S]] = frozenset(
    s for e in _BY_JOBS for s, t in _ENDS[e].items() if isinstance(t, S) or t is RESTORE
)
"""The transitional states: those a job moves a volume out of by itself."""


def end_outcome(end: End, state: S) -> EndTarget:
    """The table's cell: a target state, ``KEEP``, ``RESTORE``, ``GONE`` or ``NEVER``."""
    return _ENDS[end][state]


def end_states(end: End) -> tuple[S, ...]:
    """The states ``end`` happens from: the expected states of its compare-and-set."""
    return tuple(s for s in S if _ENDS[end][s] is not NEVER)


def restorable(end: End) -> tuple[S, ...]:
    """The states a ``RESTORE`` ending may put back: those from which an operation whose
    job it ends led to ``busy``."""
    ops = _RESTORED_BY.get(end, ())
    return tuple(s for s in S if any(outcome(op, s) is S.BUSY for op in ops))


def restored(end: End, recorded: object) -> S:
    """The state recorded when the job began (its ``previous_state``), through the enum,
    and checked against the table: ValueError if it is none that ``end`` may restore."""
    state = S(str(recorded))
    if state not in restorable(end):
        raise ValueError(f"{end} cannot restore a volume to {state}")
    return state


StateT = TypeVar("StateT", S, I)


@dataclass(frozen=True, slots=True)
class Step(Generic[StateT]):
    """One compare-and-set, as the table says it: each state it expects, and the state
    that one becomes (itself for ``KEEP``)."""

    moves: tuple[tuple[StateT, StateT], ...]

    @property
    def expected(self) -> tuple[StateT, ...]:
        return tuple(state for state, _ in self.moves)

    @property
    def to(self) -> StateT:
        """The one target every expected state leads to (ValueError if there are several)."""
        targets = {target for _, target in self.moves}
        if len(targets) != 1:
            raise ValueError(f"{self} has {len(targets)} targets")
        return targets.pop()

    def target(self, state: StateT) -> StateT:
        return dict(self.moves)[state]

    def changing(self) -> Step[StateT]:
        """Only the moves that change the state (the rows an UPDATE must touch)."""
        return Step(tuple((state, to) for state, to in self.moves if state is not to))


def step(end: End, *, previous: S | None = None) -> Step[S]:
    """The compare-and-set of ``end``; ``previous`` (from :func:`restored`) fills the
    ``RESTORE`` cells. ValueError for an ending that removes the row (nothing to set)."""
    moves: list[tuple[S, S]] = []
    for state in S:
        cell = _ENDS[end][state]
        if cell is NEVER:
            continue
        if cell is GONE:
            raise ValueError(f"{end} removes the row")
        if isinstance(cell, S):
            moves.append((state, cell))
        elif cell is KEEP:
            moves.append((state, state))
        elif previous is None or previous not in restorable(end):
            raise ValueError(f"{end} needs the state to restore, not {previous}")
        else:
            moves.append((state, previous))
    return Step(tuple(moves))


def op_step(op: Op, state: S | None = None) -> Step[S]:
    """The compare-and-set of a user operation: from ``state`` only (the state the
    service read and checked), or from every state that allows it."""
    moves: list[tuple[S, S]] = []
    for s in (state,) if state is not None else S:
        entry = _TABLE[op][s]
        if isinstance(entry, S):
            moves.append((s, entry))
        elif entry is KEEP:
            moves.append((s, s))
        elif entry is GONE or not is_allowed(op, s):
            if state is not None:
                raise ValueError(f"{op} from {s} leads to no state")
    return Step(tuple(moves))


def when_attached(target: S) -> S:
    """The state a volume that reaches ``target`` while attached is in: what Op.ATTACH
    makes of it (``available`` → ``idle``), else ``target`` itself."""
    entry = _TABLE[Op.ATTACH][target]
    return entry if isinstance(entry, S) else target


# --------------------------------------------------------------------------- instance endings


class InstanceEnd(StrEnum):
    """An ending on an instance row: the runtime's step after a start or a stop."""

    STARTED = "started"
    """The runtime booted the guest."""
    START_FAILED = "start_failed"
    """The runtime could not boot it (its volumes go back to idle)."""
    STOPPED = "stopped"
    """The runtime stopped the guest (its volumes go back to idle)."""
    EXITED = "exited"
    """Its guest ended by itself (the workload exited, the guest crashed, or its node
    is gone); its volumes go back to idle."""
    DELETED = "deleted"
    """A running instance being deleted: its guest is powered off, the row goes."""


_INSTANCE_NEVER: Final[dict[I, InstanceTarget]] = {s: NEVER for s in I}

_INSTANCE_ENDS: Final[dict[InstanceEnd, dict[I, InstanceTarget]]] = {
    InstanceEnd.STARTED: {**_INSTANCE_NEVER, I.STARTING: I.RUNNING},
    InstanceEnd.START_FAILED: {**_INSTANCE_NEVER, I.STARTING: I.STOPPED},
    InstanceEnd.STOPPED: {**_INSTANCE_NEVER, I.STOPPING: I.STOPPED},
    # A workload that ends at once may end before the start is recorded; a stop in
    # progress records how the guest ended itself (InstanceEnd.STOPPED).
    InstanceEnd.EXITED: {**_INSTANCE_NEVER, I.STARTING: I.STOPPED, I.RUNNING: I.STOPPED},
    InstanceEnd.DELETED: {**_INSTANCE_NEVER, I.STOPPING: GONE},
}

INSTANCE_TRANSITIONAL: Final[frozenset[I]] = frozenset(
    s
    for end in (InstanceEnd.STARTED, InstanceEnd.START_FAILED, InstanceEnd.STOPPED)
    for s in I
    if _INSTANCE_ENDS[end][s] is not NEVER
)
"""The instance states a start or a stop leaves for the runtime to end (and a crash
leaves for the recovery to finish)."""

HOLDING_MOUNTS: Final[frozenset[I]] = frozenset(
    s for s in I if not instance_is_allowed(InstanceOp.CHANGE_VOLUMES, s)
)
"""The instance states in which an instance holds its volumes (mounted): every state
in which its volumes cannot be changed."""


def instance_end_outcome(end: InstanceEnd, state: I) -> InstanceTarget:
    return _INSTANCE_ENDS[end][state]


def instance_end_states(end: InstanceEnd) -> tuple[I, ...]:
    """The states ``end`` happens from: the expected states of its compare-and-set."""
    return tuple(s for s in I if _INSTANCE_ENDS[end][s] is not NEVER)


def instance_step(end: InstanceEnd) -> Step[I]:
    """The compare-and-set of ``end`` (for ``DELETED``, the states it removes)."""
    moves = [(s, t if isinstance(t, I) else s) for s, t in _INSTANCE_ENDS[end].items()]
    return Step(tuple((s, t) for s, t in moves if _INSTANCE_ENDS[end][s] is not NEVER))


def instance_op_step(op: InstanceOp, target: I) -> Step[I]:
    """The compare-and-set by which ``op`` leads to ``target``."""
    return Step(tuple((s, target) for s in instance_states_leading(op, target)))
