"""Who may do what: permissions written as ``resource:action``, the set each role holds, and what
an anonymous caller may do. One table, printed in docs/permissions.md and enforced on every route
(each route names the one permission it needs; a test runs every route under every role).

Pure data: no I/O, no web framework.
"""

from __future__ import annotations

from tastegraph.domain import ROLES

__all__ = [
    "ANONYMOUS_READS",
    "PERMISSIONS",
    "PUBLIC",
    "ROLE_PERMISSIONS",
    "allowed",
    "markdown",
    "permissions_of",
]

# What each permission lets a caller do (the docs print this).
PERMISSIONS: dict[str, str] = {
    "pins:read": "list, get and search pins; similar, related and duplicate pins; thumbnails",
    "pins:write": "add, upload, edit and delete pins",
    "users:read": "read a user's profile and boards",
    "users:write": "create users",
    "users:export": "export everything stored about a user (audited)",
    "users:delete": "erase a user and all their data",
    "boards:read": "read a board and its pins",
    "boards:write": "create boards and add pins to them",
    "feeds:read": "read a user's home feed",
    "events:write": "record engagement events (saves, hides, clicks, ...)",
    "events:read": "query the raw engagement log (audited)",
    "events:delete": "delete engagement events (audited)",
    "quarantine:read": "read the inputs ingest rejected, with reasons (audited)",
    "tokens:manage": "list, create and revoke API tokens (audited)",
    "audit:read": "read the audit log (audited)",
}

# Routes anyone may call, with or without a token: liveness, readiness, the API's own docs.
PUBLIC = "public"

_VIEWER = frozenset({"pins:read", "users:read", "boards:read", "feeds:read"})
_EDITOR = _VIEWER | {"pins:write", "users:write", "boards:write", "events:write", "quarantine:read"}

# Each role's permissions. Adding a role (the moderation and promoted-pins issues add theirs) is
# one line here plus its name in ``domain.ROLES``.
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": _VIEWER,
    "editor": frozenset(_EDITOR),
    "admin": frozenset(PERMISSIONS),
}

# What a caller without a token may do when ``api.allow_anonymous_read`` is on (off: nothing).
ANONYMOUS_READS: frozenset[str] = _VIEWER

assert set(ROLE_PERMISSIONS) == set(ROLES), "every role needs its permissions"
assert all(p <= set(PERMISSIONS) for p in ROLE_PERMISSIONS.values()), "undeclared permission"


def permissions_of(role: str) -> frozenset[str]:
    """The permissions ``role`` holds (none for a role this table does not know)."""
    return ROLE_PERMISSIONS.get(role, frozenset())


def allowed(role: str | None, permission: str, *, anonymous_read: bool) -> bool:
    """Whether a caller with ``role`` (``None``: no token) may use ``permission``."""
    if permission == PUBLIC:
        return True
    if role is None:
        return anonymous_read and permission in ANONYMOUS_READS
    return permission in permissions_of(role)


def markdown() -> str:
    """The permission table as Markdown (docs/permissions.md is generated from it)."""
    roles = list(ROLES)
    head = "| permission | what it allows | anonymous¹ | " + " | ".join(roles) + " |"
    rule = "|" + "---|" * (3 + len(roles))
    rows = []
    for name, what in PERMISSIONS.items():
        marks = ["✓" if name in ANONYMOUS_READS else ""]
        marks += ["✓" if name in ROLE_PERMISSIONS[r] else "" for r in roles]
        rows.append(f"| `{name}` | {what} | " + " | ".join(marks) + " |")
    return "\n".join([head, rule, *rows])
