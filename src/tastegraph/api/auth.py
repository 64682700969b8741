"""Bearer tokens (stored hashed) and the permission each route needs (tastegraph.access)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute, iter_route_contexts

from tastegraph.access import PERMISSIONS, PUBLIC, ROLE_PERMISSIONS, allowed
from tastegraph.errors import Forbidden, Unauthorized

__all__ = [
    "ANONYMOUS",
    "Principal",
    "api_routes",
    "authenticate",
    "document_permissions",
    "needs",
    "permission_of",
    "require",
]


@dataclass
class Principal:
    token_id: int | None
    role: str
    name: str


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


def _roles_with(permission: str) -> list[str]:
    return [role for role, perms in ROLE_PERMISSIONS.items() if permission in perms]


def require(request: Request, permission: str) -> Principal:
    """The caller, if it may use ``permission``; anonymous callers may only read, if allowed."""
    who = authenticate(request)
    anonymous_read = request.app.state.tg.settings.api.allow_anonymous_read
    role = None if who is ANONYMOUS else who.role
    if allowed(role, permission, anonymous_read=anonymous_read):
        return who
    roles = _roles_with(permission)
    if role is None:
        raise Unauthorized(
            f"this needs a token with the permission {permission!r}",
            hint="send 'Authorization: Bearer <token>'; `tastegraph token create --role "
            f"{roles[0]}` makes one (roles with it: {', '.join(roles)})",
        )
    raise Forbidden(
        f"role {role!r} lacks the permission {permission!r} (roles with it: {', '.join(roles)})"
    )


def needs(permission: str) -> Any:
    """The permission a route needs, as a FastAPI dependency whose value is the caller: as a
    parameter (``who: Principal = needs("pins:write")``) or in ``dependencies=[...]``."""

    def caller(request: Request) -> Principal:
        if permission == PUBLIC:  # never looks at credentials: a bad header cannot fail it
            return ANONYMOUS
        return require(request, permission)

    caller.permission = permission  # type: ignore[attr-defined]  # read by permission_of
    return Depends(caller)


def permission_of(route: Any) -> str | None:
    """The permission a FastAPI route declared with ``needs`` (``None``: it declared none)."""
    found = [
        d.call.permission
        for d in getattr(getattr(route, "dependant", None), "dependencies", [])
        if hasattr(d.call, "permission")
    ]
    return found[0] if len(found) == 1 else None


def document_permissions(api: FastAPI) -> None:
    """Each operation in the OpenAPI document says the permission it needs (``x-permission``,
    and a line of its description)."""
    for route in api_routes(api):
        if (perm := permission_of(route)) is None:
            continue
        route.openapi_extra = {**(route.openapi_extra or {}), "x-permission": perm}
        line = (
            "Anyone may call this." if perm == PUBLIC else f"Needs `{perm}`: {PERMISSIONS[perm]}."
        )
        if line not in route.description:  # routers are shared by every app made in a process
            route.description = f"{route.description}\n\n{line}".strip()


def api_routes(api: FastAPI) -> list[APIRoute]:
    """Every API route of ``api``, those of included routers too."""
    found = (c.original_route for c in iter_route_contexts(api.routes))
    return [r for r in found if isinstance(r, APIRoute)]
