"""API tokens, stored as hashes; the last active admin token is kept unless forced."""

from __future__ import annotations

import hashlib
import secrets

import sqlalchemy as sa

from tastegraph.domain import ROLES
from tastegraph.errors import Conflict, InvalidInput, NotFound
from tastegraph.store import schema as t
from tastegraph.store.db import Database, now_iso
from tastegraph.store.ports import TokenInfo

__all__ = ["TokenRepository"]


def _hash_token(secret: str) -> str:
    # Tokens are 256-bit random strings, so a fast hash is enough (no password stretching).
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create_token(self, name: str, role: str) -> tuple[TokenInfo, str]:
        if role not in ROLES:
            raise InvalidInput(f"unknown role {role!r}", hint=f"roles: {', '.join(ROLES)}")
        secret = "tg_" + secrets.token_urlsafe(32)
        now = now_iso()
        with self._db.write() as conn:
            tid = conn.execute(
                t.tokens.insert().values(
                    name=name, role=role, token_hash=_hash_token(secret), created_at=now
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        return TokenInfo(int(tid), name, role, now), secret

    def verify_token(self, secret: str) -> TokenInfo | None:
        with self._db.read() as conn:
            r = conn.execute(
                sa.select(t.tokens).where(t.tokens.c.token_hash == _hash_token(secret))
            ).one_or_none()
        if r is None or r.revoked_at is not None:
            return None
        return TokenInfo(r.id, r.name, r.role, r.created_at, r.revoked_at)

    def list_tokens(self) -> list[TokenInfo]:
        with self._db.read() as conn:
            return [
                TokenInfo(r.id, r.name, r.role, r.created_at, r.revoked_at)
                for r in conn.execute(sa.select(t.tokens).order_by(t.tokens.c.id))
            ]

    def revoke_token(self, token_id: int, *, allow_last_admin: bool = False) -> None:
        """Revoke a token. The last active admin token is kept (``Conflict``) unless
        ``allow_last_admin``: without one, nobody can administer the API any more (only the
        CLI on this machine can make a new one)."""
        tok = t.tokens
        active = tok.c.revoked_at.is_(None)
        with self._db.write() as conn:
            row = conn.execute(
                sa.select(tok.c.role, tok.c.revoked_at).where(tok.c.id == token_id)
            ).one_or_none()
            if row is None:
                raise NotFound(
                    f"token {token_id} does not exist",
                    hint="list them: GET /tokens",
                    cli_hint="list them: tastegraph token list",
                )
            if row.revoked_at is not None:
                raise Conflict(f"token {token_id} was already revoked at {row.revoked_at}")
            if row.role == "admin" and not allow_last_admin:
                others = conn.execute(
                    sa.select(sa.func.count()).where(
                        tok.c.role == "admin", active, tok.c.id != token_id
                    )
                ).scalar_one()
                if not others:
                    raise Conflict(
                        f"token {token_id} is the last active admin token; revoking it would "
                        "lock everyone out of API administration",
                        hint="create another admin token first (`tastegraph token create "
                        f"--role admin`), or run `tastegraph token revoke {token_id} --force` "
                        "on the server's machine",
                        token_id=token_id,
                    )
            conn.execute(tok.update().where(tok.c.id == token_id).values(revoked_at=now_iso()))
