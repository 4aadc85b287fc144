"""The transition table, cell by cell: both halves (operations and endings), volumes and
instances, against matrices written out here by hand, so that any edit to the table
that is not also made here fails."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import pytest

from volumed.domain import errors
from volumed.domain import transitions as t
from volumed.domain.states import InstanceState as I  # noqa: E741
from volumed.domain.states import VolumeState as S
from volumed.domain.transitions import (
    GONE,
    KEEP,
    NEVER,
    RESTORE,
    End,
    InstanceEnd,
    InstanceOp,
    Op,
    check,
    check_instance,
    is_allowed,
    states_allowing,
)

# Columns, in this order, for every volume row below.
VOLUME_COLUMNS: Final = (
    S.UNINITIALIZED,
    S.INITIALIZING,
    S.AVAILABLE,
    S.IDLE,
    S.MOUNTED,
    S.BUSY,
    S.ERROR,
    S.TEMPLATE,
)
INSTANCE_COLUMNS: Final = (I.STOPPED, I.STARTING, I.RUNNING, I.STOPPING)

CBU = errors.CannotBeUsed
ATT = errors.Attached
NAT = errors.NotAttached
NAL = errors.NotAllowed
WIS = errors.WrongInstanceState

# fmt: off
OPERATIONS: Final[dict[Op, tuple[object, ...]]] = {
    #                    uninit  init  available   idle       mounted    busy  error template
    Op.ATTACH:          (CBU,    CBU,  S.IDLE,     ATT,       ATT,       CBU,  CBU,  CBU),
    Op.ATTACH_SHARED:   (CBU,    CBU,  S.IDLE,     KEEP,      KEEP,      CBU,  CBU,  CBU),
    Op.DETACH:          (CBU,    CBU,  NAT,        KEEP,      KEEP,      CBU,  CBU,  CBU),
    Op.MOUNT:           (CBU,    CBU,  NAT,        S.MOUNTED, KEEP,      CBU,  CBU,  CBU),
    Op.UNMOUNT:         (KEEP,   KEEP, KEEP,       KEEP,      S.IDLE,    KEEP, KEEP, KEEP),
    Op.DELETE:          (GONE,   GONE, GONE,       ATT,       ATT,       CBU,  GONE, CBU),
    Op.CLONE:           (CBU,    CBU,  S.BUSY,     S.BUSY,    KEEP,      CBU,  CBU,  KEEP),
    Op.MAKE_TEMPLATE:   (CBU,    CBU,  S.TEMPLATE, ATT,       ATT,       CBU,  CBU,  CBU),
    Op.GROW:            (CBU,    CBU,  S.BUSY,     S.BUSY,    CBU,       CBU,  CBU,  NAL),
    Op.IMPORT:          (CBU,    CBU,  S.BUSY,     ATT,       ATT,       CBU,  CBU,  NAL),
    Op.EXPORT:          (CBU,    CBU,  KEEP,       KEEP,      CBU,       CBU,  CBU,  KEEP),
    Op.UPDATE:          (KEEP,   KEEP, KEEP,       KEEP,      KEEP,      KEEP, KEEP, KEEP),
    Op.RESERVE:         (CBU,    CBU,  S.BUSY,     S.BUSY,    CBU,       CBU,  CBU,  NAL),
    Op.DELETE_TEMPLATE: (CBU,    CBU,  CBU,        CBU,       CBU,       CBU,  CBU,  GONE),
    Op.RELEASE:         (CBU,    CBU,  KEEP,       KEEP,      KEEP,      CBU,  KEEP, CBU),
    Op.COPY_TEMPLATE:   (CBU,    CBU,  CBU,        CBU,       CBU,       CBU,  CBU,  KEEP),
}

N = NEVER
R = RESTORE
IN, AV, ER = S.INITIALIZING, S.AVAILABLE, S.ERROR
ENDINGS: Final[dict[End, tuple[object, ...]]] = {
    #                    uninit init  available idle  mounted busy  error template
    End.FORMAT_STARTED:  (IN,    KEEP, N,        N,    N,      N,    N,    N),
    End.FORMATTED:       (N,     AV,   N,        N,    N,      N,    N,    N),
    End.FORMAT_FAILED:   (ER,    ER,   N,        N,    N,      N,    N,    N),
    End.COPY_STARTED:    (IN,    KEEP, N,        N,    N,      N,    N,    N),
    End.COPIED:          (AV,    AV,   N,        N,    N,      N,    N,    N),
    End.COPY_FAILED:     (ER,    ER,   N,        N,    N,      N,    N,    N),
    End.SOURCE_RETURNED: (N,     N,    N,        N,    N,      R,    N,    N),
    End.GROWN:           (N,     N,    N,        N,    N,      R,    N,    N),
    End.GROW_UNDONE:     (N,     N,    N,        N,    N,      R,    N,    N),
    End.GROW_FAILED:     (N,     N,    N,        N,    N,      ER,   N,    N),
    End.POLICY_SWITCHED: (N,     N,    N,        N,    N,      R,    N,    N),
    End.POLICY_KEPT:     (N,     N,    N,        N,    N,      R,    N,    N),
    End.POLICY_FAILED:   (N,     N,    N,        N,    N,      ER,   N,    N),
    End.IMPORT_ENDED:    (N,     N,    N,        N,    N,      AV,   N,    N),
    End.IMPORT_LOST:     (N,     N,    N,        N,    N,      ER,   N,    N),
    End.DELETED:         (GONE,  GONE, GONE,     GONE, GONE,   GONE, GONE, GONE),
    End.RETRIED:         (KEEP,  KEEP, KEEP,     KEEP, KEEP,   KEEP, KEEP, KEEP),
    End.PARKED:          (KEEP,  KEEP, KEEP,     KEEP, KEEP,   KEEP, KEEP, KEEP),
    End.UNPARKED:        (KEEP,  KEEP, KEEP,     KEEP, KEEP,   KEEP, KEEP, KEEP),
    End.ORPHANED:        (N,     N,    N,        AV,   AV,     N,    N,    N),
    End.IMAGE_MISSING:   (ER,    ER,   ER,       ER,   ER,     ER,   ER,   ER),
}

INSTANCE_OPERATIONS: Final[dict[InstanceOp, tuple[object, ...]]] = {
    #                          stopped     starting  running     stopping
    InstanceOp.START:          (I.STARTING, KEEP,     KEEP,       WIS),
    InstanceOp.STOP:           (KEEP,       WIS,      I.STOPPING, KEEP),
    InstanceOp.DELETE:         (GONE,       WIS,      I.STOPPING, WIS),
    InstanceOp.CHANGE_VOLUMES: (KEEP,       WIS,      WIS,        WIS),
}

INSTANCE_ENDINGS: Final[dict[InstanceEnd, tuple[object, ...]]] = {
    #                          stopped  starting   running    stopping
    InstanceEnd.STARTED:       (N,      I.RUNNING, N,         N),
    InstanceEnd.START_FAILED:  (N,      I.STOPPED, N,         N),
    InstanceEnd.STOPPED:       (N,      N,         N,         I.STOPPED),
    InstanceEnd.EXITED:        (N,      I.STOPPED, I.STOPPED, N),
    InstanceEnd.DELETED:       (N,      N,         N,         GONE),
}
# fmt: on

RESTORABLE: Final[dict[End, tuple[S, ...]]] = {
    End.SOURCE_RETURNED: (S.AVAILABLE, S.IDLE),
    End.GROWN: (S.AVAILABLE, S.IDLE),
    End.GROW_UNDONE: (S.AVAILABLE, S.IDLE),
    End.POLICY_SWITCHED: (S.AVAILABLE, S.IDLE),
    End.POLICY_KEPT: (S.AVAILABLE, S.IDLE),
}
"""The states a RESTORE ending may put back: those its job's operation made busy."""


def _cells(
    matrix: Mapping[Any, tuple[object, ...]], columns: tuple[object, ...]
) -> list[tuple[object, object, object]]:
    return [(row, col, cells[i]) for row, cells in matrix.items() for i, col in enumerate(columns)]


def _same(actual: object, expected: object) -> bool:
    # Markers and error classes by identity; states by identity too (enum members).
    return actual is expected


def test_the_matrices_cover_every_row_and_column() -> None:
    assert set(OPERATIONS) == set(Op)
    assert set(ENDINGS) == set(End)
    assert set(INSTANCE_OPERATIONS) == set(InstanceOp)
    assert set(INSTANCE_ENDINGS) == set(InstanceEnd)
    assert set(VOLUME_COLUMNS) == set(S) and len(VOLUME_COLUMNS) == len(S)
    assert set(INSTANCE_COLUMNS) == set(I) and len(INSTANCE_COLUMNS) == len(I)
    for matrix, width in (
        (OPERATIONS, len(S)),
        (ENDINGS, len(S)),
        (INSTANCE_OPERATIONS, len(I)),
        (INSTANCE_ENDINGS, len(I)),
    ):
        assert all(len(row) == width for row in matrix.values())


# ---------------------------------------------------------------- operations (user half)


@pytest.mark.parametrize(("op", "state", "expected"), _cells(OPERATIONS, VOLUME_COLUMNS))
def test_volume_operation_cell(op: Op, state: S, expected: object) -> None:
    assert _same(t.outcome(op, state), expected)
    if isinstance(expected, type):
        assert not is_allowed(op, state)
        assert state not in states_allowing(op)
        with pytest.raises(errors.VolumedError) as raised:
            check(op, state, "'v'")
        assert type(raised.value) is expected
        assert raised.value.code == expected.code
        assert "'v'" in raised.value.message
    else:
        assert is_allowed(op, state)
        assert state in states_allowing(op)
        assert _same(check(op, state, "'v'"), expected)


@pytest.mark.parametrize(
    ("op", "state", "expected"),
    _cells(INSTANCE_OPERATIONS, INSTANCE_COLUMNS),
)
def test_instance_operation_cell(op: InstanceOp, state: I, expected: object) -> None:
    assert _same(t.instance_outcome(op, state), expected)
    if isinstance(expected, type):
        assert not t.instance_is_allowed(op, state)
        with pytest.raises(errors.WrongInstanceState) as raised:
            check_instance(op, state, "'i'")
        assert raised.value.code == 11
        assert "'i'" in raised.value.message
    else:
        assert t.instance_is_allowed(op, state)
        assert state in t.instance_states_allowing(op)
        assert _same(check_instance(op, state, "'i'"), expected)
        if isinstance(expected, I) or expected is GONE:
            assert state in t.instance_states_leading(op, expected)


# ---------------------------------------------------------------- endings (second half)


@pytest.mark.parametrize(("end", "state", "expected"), _cells(ENDINGS, VOLUME_COLUMNS))
def test_volume_ending_cell(end: End, state: S, expected: object) -> None:
    assert _same(t.end_outcome(end, state), expected)
    assert (state in t.end_states(end)) is (expected is not NEVER)
    if expected is GONE:
        with pytest.raises(ValueError):
            t.step(end)
        return
    # A row with RESTORE cells is stepped once for each state it may restore.
    previous: tuple[S | None, ...] = RESTORABLE.get(end) or (None,)
    for restore in previous:
        moves = dict(t.step(end, previous=restore).moves)
        if expected is NEVER:
            assert state not in moves
        elif expected is KEEP:
            assert moves[state] is state
        elif expected is RESTORE:
            assert moves[state] is restore
        else:
            assert moves[state] is expected


@pytest.mark.parametrize(
    ("end", "state", "expected"),
    _cells(INSTANCE_ENDINGS, INSTANCE_COLUMNS),
)
def test_instance_ending_cell(end: InstanceEnd, state: I, expected: object) -> None:
    assert _same(t.instance_end_outcome(end, state), expected)
    moves = dict(t.instance_step(end).moves)
    assert (state in t.instance_end_states(end)) is (expected is not NEVER)
    if expected is NEVER:
        assert state not in moves
    elif expected is GONE:
        assert moves[state] is state  # the row is removed as it is
    else:
        assert moves[state] is expected


# ---------------------------------------------------------------- what is derived from it


@pytest.mark.parametrize("end", list(End))
def test_restore_takes_only_what_the_job_made_busy(end: End) -> None:
    allowed = RESTORABLE.get(end, ())
    assert t.restorable(end) == allowed
    for state in S:
        if state in allowed:
            assert t.restored(end, state.value) is state
        else:
            with pytest.raises(ValueError):
                t.restored(end, state.value)
            if RESTORE in ENDINGS[end]:
                with pytest.raises(ValueError):
                    t.step(end, previous=state)
    with pytest.raises(ValueError):
        t.restored(end, "no-such-state")


def test_the_sets_the_services_and_the_store_share() -> None:
    assert {S.UNINITIALIZED, S.INITIALIZING, S.BUSY} == t.TRANSITIONAL
    assert {I.STARTING, I.STOPPING} == t.INSTANCE_TRANSITIONAL
    assert {I.STARTING, I.RUNNING, I.STOPPING} == t.HOLDING_MOUNTS
    assert t.INITIAL is S.UNINITIALIZED
    assert t.INITIAL_INSTANCE is I.STOPPED


@pytest.mark.parametrize("state", list(S))
def test_when_attached_is_what_attach_makes_of_a_state(state: S) -> None:
    assert t.when_attached(state) is (S.IDLE if state is S.AVAILABLE else state)


def test_op_step_is_the_allowed_cells_with_their_targets() -> None:
    for op, row in OPERATIONS.items():
        moves = dict(t.op_step(op).moves)
        for state, cell in zip(VOLUME_COLUMNS, row, strict=True):
            if isinstance(cell, S):
                assert moves[state] is cell
            elif cell is KEEP:
                assert moves[state] is state
            else:  # refused, or the row goes: nothing to set
                assert state not in moves
    assert t.op_step(Op.GROW, S.IDLE).moves == ((S.IDLE, S.BUSY),)
    with pytest.raises(ValueError):
        t.op_step(Op.GROW, S.MOUNTED)
    assert t.op_step(Op.UNMOUNT).changing().moves == ((S.MOUNTED, S.IDLE),)
    stop = t.instance_op_step(InstanceOp.STOP, I.STOPPING)
    assert stop.moves == ((I.RUNNING, I.STOPPING),)
    assert stop.to is I.STOPPING
    with pytest.raises(ValueError):
        _ = t.op_step(Op.ATTACH_SHARED).to  # three targets


def test_refusals_that_say_what_to_do() -> None:
    with pytest.raises(errors.CannotBeUsed, match="stop the instance to grow"):
        check(Op.GROW, S.MOUNTED, "'v'")
    with pytest.raises(errors.CannotBeUsed, match="change its quota policy"):
        check(Op.RESERVE, S.MOUNTED, "'v'")
    with pytest.raises(errors.CannotBeUsed, match="is a template already"):
        check(Op.MAKE_TEMPLATE, S.TEMPLATE, "'v'")
    with pytest.raises(errors.CannotBeUsed, match="is not a template"):
        check(Op.COPY_TEMPLATE, S.AVAILABLE, "'v'")


def test_error_codes_match_the_api_reference() -> None:
    codes = {
        errors.NotSupported: 1,
        errors.Invalid: 7,
        errors.NotFound: 8,
        errors.WrongInstanceState: 11,
        errors.MissingId: 13,
        errors.NotAllowed: 14,
        errors.Attached: 15,
        errors.NotBoth: 17,
        errors.QuotaExceeded: 19,
        errors.NotAttached: 21,
        errors.TooLong: 22,
        errors.AlreadyExists: 23,
        errors.CannotBeUsed: 24,
    }
    for cls, code in codes.items():
        assert cls.code == code
