"""Validation rules for user-chosen values."""

from __future__ import annotations

import string

import pytest

from volumed.domain import errors, rules


@pytest.mark.parametrize("at", ["/", "/mnt", "/mnt/", "/data/sub dir", "/a.b/c..d", "/.hidden"])
def test_valid_mount_paths(at: str) -> None:
    assert rules.check_mount_path(at) == at


@pytest.mark.parametrize("at", ["mnt", "", "/a:b", "/a/./b", "/a/../b", "/..", "/a/.", "/x\x00"])
def test_invalid_mount_paths(at: str) -> None:
    with pytest.raises(errors.Invalid):
        rules.check_mount_path(at)


def test_tags_are_deduplicated_in_order_and_limited() -> None:
    assert rules.check_tags(["a", "b", "a"]) == ["a", "b"]
    with pytest.raises(errors.TooMany):
        rules.check_tags([f"t{i}" for i in range(17)])
    with pytest.raises(errors.TooLong):
        rules.check_tags(["x" * 257])
    with pytest.raises(errors.Invalid):
        rules.check_tags(["no spaces"])


def test_random_names_follow_the_hosted_pattern() -> None:
    name = rules.random_name()
    assert name.startswith("vol-") and len(name) == 9 and name[4:].isalnum()
    assert name == name.lower()
    names = [rules.random_name("x") for _ in range(3000)]
    for position in range(2, 7):  # every character can come at every place
        assert {n[position] for n in names} == set(string.ascii_lowercase + string.digits)


def test_uuids_are_canonicalised() -> None:
    upper = "847FE9EF-CCB1-409C-BE9C-ABDC02498131"
    assert rules.canonical_uuid(upper) == upper.lower()
    with pytest.raises(errors.Invalid, match="Invalid uuid 'nope'"):
        rules.canonical_uuid("nope")
