"""One exception tree for the whole project.

Every error carries a stable machine-readable ``code``, an HTTP ``status`` and a ``hint`` that tells
the user what to do next. The API turns any of them into the single JSON error envelope; the CLI
prints ``message`` and ``cli_hint`` (``hint`` when there is none) and exits non-zero. A hint that
names a route or a query parameter (``POST /users``, ``?q=``) means nothing at a shell prompt, so
such errors give the command-line way to do it as ``cli_hint``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Conflict",
    "Forbidden",
    "ImageRejected",
    "IndexMismatch",
    "InvalidInput",
    "InvalidSetting",
    "MissingExtra",
    "ModelUnavailable",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "RayUnavailable",
    "SchemaOutdated",
    "StoreUnavailable",
    "TastegraphError",
    "Unauthorized",
]


class TastegraphError(Exception):
    """Base class: ``code`` and ``status`` are part of the public contract."""

    code = "error"
    status = 500
    retry_after_s: int | None = None  # the API sends it as Retry-After

    def __init__(self, message: str, *, hint: str = "", cli_hint: str = "", **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.cli_hint = cli_hint or hint
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        if self.details:
            out["details"] = self.details
        return out


class InvalidInput(TastegraphError):
    code = "invalid_input"
    status = 422


class InvalidSetting(InvalidInput):
    """A setting with a value it does not accept, or an unknown one (file, env or flag)."""

    code = "invalid_setting"

    def __init__(self, message: str) -> None:
        super().__init__(
            message,
            hint="`tastegraph settings` lists every setting, its value and where it came from.",
        )


class ImageRejected(InvalidInput):
    """An image that cannot be ingested; ``reason`` is one of a fixed set of codes."""

    code = "image_rejected"

    def __init__(self, reason: str, message: str, *, hint: str = "", **details: Any) -> None:
        super().__init__(message, hint=hint, reason=reason, **details)
        self.reason = reason


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"
    status = 413


class NotFound(TastegraphError):
    code = "not_found"
    status = 404


class Conflict(TastegraphError):
    code = "conflict"
    status = 409


class Unauthorized(TastegraphError):
    code = "unauthorized"
    status = 401


class Forbidden(TastegraphError):
    code = "forbidden"
    status = 403


class ModelUnavailable(TastegraphError):
    code = "model_unavailable"
    status = 503


class MissingExtra(TastegraphError):
    """An optional dependency that this command needs is not installed; ``extra`` names it."""

    code = "missing_extra"
    status = 503


class StoreUnavailable(TastegraphError):
    """The database behind the store cannot be opened (unreachable, refused, absent)."""

    code = "store_unavailable"
    status = 503
    retry_after_s = 1


class RayUnavailable(TastegraphError):
    """The Ray cluster an ingest was pointed at does not answer, or Ray failed to start."""

    code = "ray_unavailable"
    status = 503


class SchemaOutdated(StoreUnavailable):
    """A database whose schema is older (or newer) than this version of tastegraph's."""

    code = "schema_outdated"


class IndexMismatch(TastegraphError):
    """An index file built for another model, dimension or settings digest."""

    code = "index_mismatch"
    status = 409


class RateLimited(TastegraphError):
    """Too many requests (or failed sign-in attempts) from one caller or address."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after_s: int, hint: str = "") -> None:
        super().__init__(message, hint=hint, retry_after_s=retry_after_s)
        self.retry_after_s = retry_after_s
