"""The SQL store's users and their API tokens."""

from __future__ import annotations

from typing import Any

from volumed.domain.model import User
from volumed.domain.store import NameTaken
from volumed.store._base import SqlBase, now_us
from volumed.store.db import Queries, UniqueViolation

__all__ = ["SqlUsers"]


class SqlUsers(SqlBase):
    """Users and tokens (:class:`~volumed.domain.store.UserStore`)."""

    async def user_for_token(self, token_hash: str) -> User | None:
        db: Queries = self._db
        row = await db.fetchone(
            "SELECT u.id, u.name FROM tokens t JOIN users u ON u.id = t.user_id "
            "WHERE t.token_hash = ?",
            (token_hash,),
        )
        return User(row[0], row[1]) if row else None

    async def create_user(self, user: User) -> None:
        db: Queries = self._db
        try:
            await db.execute(
                "INSERT INTO users (id, name, created_at_us) VALUES (?,?,?)",
                (user.id, user.name, now_us()),
            )
        except UniqueViolation:
            raise NameTaken(user.name) from None

    async def find_user(self, name: str) -> User | None:
        db: Queries = self._db
        row = await db.fetchone("SELECT id, name FROM users WHERE name = ?", (name,))
        return User(row[0], row[1]) if row else None

    async def list_users(self) -> list[User]:
        db: Queries = self._db
        rows = await db.fetchall("SELECT id, name FROM users ORDER BY created_at_us, name")
        return [User(r[0], r[1]) for r in rows]

    async def delete_user(self, user_id: str) -> bool:
        """Remove a user and their tokens; refused (False) while they own anything."""
        async with self._db.transaction() as db:
            owns = await db.fetchone(
                "SELECT 1 FROM volumes WHERE owner_id = ? UNION ALL "
                "SELECT 1 FROM instances WHERE owner_id = ? LIMIT 1",
                (user_id, user_id),
            )
            if owns:
                return False
            await db.execute("DELETE FROM tokens WHERE user_id = ?", (user_id,))
            return (await db.execute("DELETE FROM users WHERE id = ?", (user_id,))) == 1

    async def add_token(self, token_id: str, user_id: str, token_hash: str, label: str) -> None:
        """Raises NameTaken if the token is registered already (replicas starting
        together with one preset token)."""
        db: Queries = self._db
        try:
            await db.execute(
                "INSERT INTO tokens (id, user_id, token_hash, label, created_at_us) "
                "VALUES (?,?,?,?,?)",
                (token_id, user_id, token_hash, label, now_us()),
            )
        except UniqueViolation:
            raise NameTaken(label) from None

    async def list_tokens(self, user_id: str | None = None) -> list[dict[str, Any]]:
        db: Queries = self._db
        sql = (
            "SELECT t.id, u.name AS user, t.label, t.created_at_us FROM tokens t "
            "JOIN users u ON u.id = t.user_id"
        )
        params: tuple[Any, ...] = ()
        if user_id is not None:
            sql += " WHERE t.user_id = ?"
            params = (user_id,)
        return [dict(r) for r in await db.fetchall(sql + " ORDER BY t.created_at_us", params)]

    async def revoke_token(self, token_id: str) -> bool:
        db: Queries = self._db
        return (await db.execute("DELETE FROM tokens WHERE id = ?", (token_id,))) == 1

    async def count_users(self) -> int:
        db: Queries = self._db
        return int((await db.fetchone("SELECT count(*) FROM users"))[0])
