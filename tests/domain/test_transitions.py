"""The transition table: complete, consistent, and the only source of allowed states."""

from __future__ import annotations

import pytest

from volumed.domain import errors
from volumed.domain.states import VolumeState
from volumed.domain.transitions import GONE, KEEP, Op, check, is_allowed, states_allowing


@pytest.mark.parametrize("op", list(Op))
def test_every_operation_covers_every_state(op: Op) -> None:
    for state in VolumeState:
        is_allowed(op, state)  # raises KeyError if a state is missing


@pytest.mark.parametrize(
    ("op", "state", "expected"),
    [
        (Op.ATTACH, VolumeState.AVAILABLE, VolumeState.IDLE),
        (Op.ATTACH, VolumeState.IDLE, errors.Attached),
        (Op.ATTACH, VolumeState.MOUNTED, errors.Attached),
        (Op.ATTACH, VolumeState.BUSY, errors.CannotBeUsed),
        (Op.ATTACH, VolumeState.INITIALIZING, errors.CannotBeUsed),
        (Op.ATTACH, VolumeState.TEMPLATE, errors.CannotBeUsed),
        (Op.DETACH, VolumeState.AVAILABLE, errors.NotAttached),
        (Op.DELETE, VolumeState.AVAILABLE, GONE),
        (Op.DELETE, VolumeState.ERROR, GONE),
        (Op.DELETE, VolumeState.IDLE, errors.Attached),
        (Op.DELETE, VolumeState.UNINITIALIZED, GONE),
        (Op.DELETE, VolumeState.INITIALIZING, GONE),
        (Op.DELETE, VolumeState.BUSY, errors.CannotBeUsed),
        (Op.MOUNT, VolumeState.IDLE, VolumeState.MOUNTED),
        (Op.UNMOUNT, VolumeState.MOUNTED, VolumeState.IDLE),
        (Op.MAKE_TEMPLATE, VolumeState.AVAILABLE, VolumeState.TEMPLATE),
        (Op.GROW, VolumeState.MOUNTED, errors.CannotBeUsed),
        (Op.UPDATE, VolumeState.BUSY, KEEP),
    ],
)
def test_table_entries(op: Op, state: VolumeState, expected: object) -> None:
    if isinstance(expected, type):
        assert issubclass(expected, errors.VolumedError)
        with pytest.raises(expected) as raised:
            check(op, state, "'v'")
        assert raised.value.code == expected.code
        assert "'v'" in raised.value.message
    else:
        assert check(op, state, "'v'") is expected or check(op, state, "'v'") == expected


def test_states_allowing_is_what_the_compare_and_set_expects() -> None:
    assert states_allowing(Op.DELETE) == (
        VolumeState.UNINITIALIZED,
        VolumeState.INITIALIZING,
        VolumeState.AVAILABLE,
        VolumeState.ERROR,
    )
    assert states_allowing(Op.ATTACH) == (VolumeState.AVAILABLE,)


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
