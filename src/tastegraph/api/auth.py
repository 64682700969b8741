"""Bearer tokens with roles: viewer < editor < admin. Tokens are stored hashed."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from tastegraph.domain import ROLES
from tastegraph.errors import Forbidden, Unauthorized

__all__ = ["Principal", "authenticate", "require"]


@dataclass
class Principal:
    token_id: int | None
    role: str
    name: str

    def at_least(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


ANONYMOUS = Principal(None, "anonymous", "anonymous")


def authenticate(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    if not header:
        return ANONYMOUS
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized(
            "malformed Authorization header", hint="send 'Authorization: Bearer <token>'"
        )
    info = request.app.state.tg.store.verify_token(secret.strip())
    if info is None:
        raise Unauthorized(
            "unknown or revoked token",
            hint="create one with `tastegraph token create --role editor`",
        )
    return Principal(info.id, info.role, info.name)


def require(request: Request, role: str) -> Principal:
    """The caller, if it holds ``role`` or better; anonymous callers may only read, if allowed."""
    who = authenticate(request)
    if who is ANONYMOUS:
        if role == "viewer" and request.app.state.tg.settings.api.allow_anonymous_read:
            return who
        raise Unauthorized(
            f"this needs a token with role {role!r} or higher",
            hint="send 'Authorization: Bearer <token>'; `tastegraph token create --role "
            f"{role}` makes one",
        )
    if not who.at_least(role):
        raise Forbidden(f"role {who.role!r} cannot do this; it needs {role!r} or higher")
    return who
