"""Bearer tokens (stored hashed) and the permission each route needs (tastegraph.access)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute, iter_route_contexts

from tastegraph.access import PERMISSIONS, PUBLIC, ROLE_PERMISSIONS, allowed
from tastegraph.api.limits import RateLimits
from tastegraph.errors import Forbidden, Unauthorized

__all__ = [
    "ANONYMOUS",
    "Principal",
    "address_of",
    "api_routes",
    "authenticate",
    "document_permissions",
    "enumerates",
    "limits_of",
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


def address_of(request: Request) -> str:
    """The caller's address (behind a proxy, uvicorn's ``--forwarded-allow-ips`` decides whose
    X-Forwarded-For is believed)."""
    return request.client.host if request.client else "unknown"


def limits_of(request: Request) -> RateLimits:
    limits: RateLimits = request.app.state.limits
    return limits


def authenticate(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    if not header:
        return ANONYMOUS
    limits, address = limits_of(request), address_of(request)
    limits.check_credentials(address)
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        limits.credentials_failed(address)
        raise Unauthorized(
            "malformed Authorization header", hint="send 'Authorization: Bearer <token>'"
        )
    info = request.app.state.tg.store.verify_token(secret.strip())
    if info is None:
        limits.credentials_failed(address)
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


def needs(permission: str, *, enumerates: bool = False) -> Any:
    """The permission a route needs, as a FastAPI dependency whose value is the caller: as a
    parameter (``who: Principal = needs("pins:write")``) or in ``dependencies=[...]``.
    ``enumerates``: the route lists or searches, so each call counts against the caller's
    ``limits.enumerate`` (a token is one caller; without one, the address is)."""

    def caller(request: Request) -> Principal:
        if permission == PUBLIC:  # never looks at credentials: a bad header cannot fail it
            return ANONYMOUS
        who = require(request, permission)
        if enumerates:
            key = f"address:{address_of(request)}" if who is ANONYMOUS else f"token:{who.token_id}"
            limits_of(request).enumerate(key)
        return who

    caller.permission = permission  # type: ignore[attr-defined]  # read by permission_of
    caller.enumerates = enumerates  # type: ignore[attr-defined]
    return Depends(caller)


def enumerates(route: Any) -> bool:
    """Whether a route declared that it enumerates (``needs(..., enumerates=True)``)."""
    deps = getattr(getattr(route, "dependant", None), "dependencies", [])
    return any(getattr(d.call, "enumerates", False) for d in deps)


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
    and a line of its description). Written into the document as it is made, from the routes'
    declarations: the routes themselves are shared by every app made in a process."""
    make_schema = api.openapi

    def openapi() -> dict[str, Any]:
        fresh = api.openapi_schema is None
        schema = make_schema()
        if not fresh:
            return schema
        for route in api_routes(api):
            if (perm := permission_of(route)) is None:
                continue
            line = (
                "Anyone may call this."
                if perm == PUBLIC
                else f"Needs `{perm}`: {PERMISSIONS[perm]}."
            )
            for method in route.methods or ():
                op = schema.get("paths", {}).get(route.path_format, {}).get(method.lower())
                if op is None:  # not in the document (include_in_schema=False)
                    continue
                op["x-permission"] = perm
                op["description"] = f"{op.get('description', '')}\n\n{line}".strip()
        return schema

    api.openapi = openapi  # type: ignore[method-assign]


def api_routes(api: FastAPI) -> list[APIRoute]:
    """Every API route of ``api``, those of included routers too."""
    found = (c.original_route for c in iter_route_contexts(api.routes))
    return [r for r in found if isinstance(r, APIRoute)]
