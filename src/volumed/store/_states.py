"""The one store module that maps the state enums to the ``state`` columns.

The SQL rooms never spell a state. A compare-and-set gets its expected and target states
as a :class:`~volumed.domain.transitions.Step` (from its caller, who asked the table)
and renders it here into SQL with bind parameters. What follows from a change on another
row (volumes unmounted as their instance stops, ``available`` once their last attachment
went, ``idle`` when formatted while attached) is read from the table here too.
"""

from __future__ import annotations

from collections.abc import Sequence

from volumed.domain import transitions as table
from volumed.domain.states import InstanceState, VolumeState
from volumed.domain.transitions import End, Op, Step

__all__ = [
    "HOLDING_MOUNTS",
    "IMAGE_MISSING",
    "INSTANCE_TRANSITIONAL",
    "ORPHANED",
    "RUNNING",
    "STOPPED",
    "TEMPLATE",
    "UNMOUNT",
    "assign",
    "attached",
    "expect",
    "values",
]

HOLDING_MOUNTS: tuple[str, ...] = tuple(s.value for s in InstanceState if s in table.HOLDING_MOUNTS)
"""Instance states whose instance holds its volumes mounted (its ``mounted_by``)."""
INSTANCE_TRANSITIONAL: tuple[str, ...] = tuple(
    s.value for s in InstanceState if s in table.INSTANCE_TRANSITIONAL
)
"""Instance states a crash may leave for the recovery to finish."""
RUNNING: str = InstanceState.RUNNING.value
"""An instance whose guest runs on a node (adopted at start, stopped by request)."""
STOPPED: str = InstanceState.STOPPED.value
"""An instance that holds no resources (not counted as live)."""
TEMPLATE: str = VolumeState.TEMPLATE.value
"""Volumes listed through ``/v1/volumes/templates`` only."""

UNMOUNT: Step[VolumeState] = table.op_step(Op.UNMOUNT).changing()
"""A volume no running instance holds any more (Op.UNMOUNT: ``mounted`` → ``idle``)."""
ORPHANED: Step[VolumeState] = table.step(End.ORPHANED)
"""A volume whose last attachment went."""
IMAGE_MISSING: Step[VolumeState] = table.step(End.IMAGE_MISSING)
"""A volume ``volumed fsck --repair`` found without its image."""


def values(states: Sequence[str]) -> tuple[str, ...]:
    """The column values of ``states`` (enum members, or values already)."""
    return tuple(str(s) for s in states)


def expect(
    states: Step[VolumeState] | Step[InstanceState] | Sequence[str], column: str = "state"
) -> tuple[str, tuple[str, ...]]:
    """``state IN (?, ...)`` and its parameters: the states a compare-and-set expects."""
    expected: Sequence[str] = states.expected if isinstance(states, Step) else states
    return f"{column} IN ({','.join('?' * len(expected))})", values(expected)


def assign(
    step: Step[VolumeState] | Step[InstanceState], column: str = "state"
) -> tuple[str, tuple[str, ...]]:
    """The new value of the state column: ``?`` when every expected state leads to the
    same target, else ``CASE state WHEN ? THEN ? ... ELSE state END``."""
    targets = {target.value for _, target in step.moves}
    if len(targets) == 1:
        return "?", (targets.pop(),)
    whens = " ".join("WHEN ? THEN ?" for _ in step.moves)
    params = tuple(state.value for move in step.moves for state in move)
    return f"CASE {column} {whens} ELSE {column} END", params


def attached(step: Step[VolumeState]) -> Step[VolumeState]:
    """``step`` for a volume that has attachments: each target as Op.ATTACH makes it
    (a volume formatted while attached, made with its instance, ends ``idle``)."""
    return Step(tuple((state, table.when_attached(target)) for state, target in step.moves))
