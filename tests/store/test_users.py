"""Users and tokens: a token names one user; names and tokens are unique; a user who
owns anything cannot be removed."""

from __future__ import annotations

import pytest

from tests.store.harness import ROOMY, tenant, volume
from volumed.domain.model import User
from volumed.domain.store import NameTaken
from volumed.domain.tokens import new_token, token_digest
from volumed.store.sql import SqlStore


async def test_a_token_names_its_user_and_nothing_else_does(store: SqlStore) -> None:
    assert await store.count_users() == 0
    alice, bob = await tenant(store, "alice"), await tenant(store, "bob")
    token = new_token()
    await store.add_token("t1", alice.id, token_digest(token), "cli")
    assert await store.user_for_token(token_digest(token)) == alice
    assert await store.user_for_token(token_digest(new_token())) is None
    assert await store.find_user("bob") == bob
    assert await store.find_user("carol") is None
    assert await store.count_users() == 2
    assert await store.list_users() == [alice, bob]


async def test_names_and_tokens_are_unique(store: SqlStore) -> None:
    alice = await tenant(store, "alice")
    with pytest.raises(NameTaken):
        await store.create_user(User("another-id", "alice"))
    digest = token_digest(new_token())
    await store.add_token("t1", alice.id, digest, "first")
    with pytest.raises(NameTaken):
        await store.add_token("t2", alice.id, digest, "again")
    assert [t["id"] for t in await store.list_tokens(alice.id)] == ["t1"]


async def test_a_revoked_token_names_nobody(store: SqlStore) -> None:
    alice = await tenant(store)
    keep, drop = token_digest(new_token()), token_digest(new_token())
    await store.add_token("keep", alice.id, keep, "a")
    await store.add_token("drop", alice.id, drop, "b")
    assert await store.revoke_token("drop")
    assert not await store.revoke_token("drop")
    assert await store.user_for_token(drop) is None
    assert await store.user_for_token(keep) == alice


async def test_a_user_who_owns_a_volume_is_not_deleted(store: SqlStore) -> None:
    owner, idle = await tenant(store), await tenant(store)
    digest = token_digest(new_token())
    await store.add_token("t", idle.id, digest, "x")
    await store.insert_volume_within_quota(volume(owner), None, {}, ROOMY)
    assert not await store.delete_user(owner.id)
    assert await store.find_user(owner.name) == owner
    assert await store.delete_user(idle.id)
    assert await store.find_user(idle.name) is None
    assert await store.user_for_token(digest) is None
