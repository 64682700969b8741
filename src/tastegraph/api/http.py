"""HTTP plumbing of the API: the one error shape, body limits, 404/405/500 answers."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tastegraph.errors import PayloadTooLarge, TastegraphError

__all__ = [
    "BodyLimit",
    "CatchAll",
    "allowed_methods",
    "document_body_errors",
    "error_body",
    "etags",
    "install_error_handling",
]

log = logging.getLogger("tastegraph.api")


def error_body(code: str, message: str, hint: str = "", details: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if hint:
        err["hint"] = hint
    if details:
        err["details"] = details
    return {"error": err}


class BodyLimit:
    """Reject request bodies over ``limit`` bytes, by header and while streaming (no trust)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._reject(send)
            return
        seen = 0
        too_big = False

        async def limited() -> Message:
            nonlocal seen, too_big
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    too_big = True
                    raise PayloadTooLarge(f"request body is larger than {self.limit} bytes")
            return msg

        try:
            await self.app(scope, limited, send)
        except PayloadTooLarge:
            if too_big:
                await self._reject(send)
            else:  # pragma: no cover
                raise

    async def _reject(self, send: Send) -> None:
        resp = JSONResponse(
            error_body(
                "payload_too_large",
                f"request body is larger than {self.limit} bytes",
                "send a smaller file or raise TASTEGRAPH_MAX_UPLOAD_BYTES",
            ),
            status_code=413,
        )
        await resp({"type": "http"}, _noop_receive, send)


async def _noop_receive() -> Message:
    return {"type": "http.disconnect"}


def install_error_handling(api: FastAPI, max_body_bytes: int) -> None:
    """Every error in the one shape: the project's own, FastAPI's validation, the router's
    404/405 (with an ``Allow`` that names every method of the path), and a last-resort 500."""
    api.add_middleware(BodyLimit, limit=max_body_bytes)
    api.add_middleware(CatchAll)

    @api.exception_handler(TastegraphError)
    async def _tg_error(_: Request, exc: TastegraphError) -> JSONResponse:
        retry = {} if exc.retry_after_s is None else {"Retry-After": str(exc.retry_after_s)}
        return JSONResponse(
            error_body(exc.code, exc.message, exc.hint, exc.details),
            status_code=exc.status,
            headers=retry,
        )

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error"
        )
        headers = dict(exc.headers or {})
        hint = ""
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":  # the router's: no such path
            message = f"there is nothing at {request.url.path}"
            hint = "the routes are listed at /docs (ids in paths are numbers)"
        if exc.status_code == 405:
            # Starlette names only the methods of the first route matching the path.
            allowed = allowed_methods(api, request.scope)
            headers["Allow"] = ", ".join(allowed)
            hint = f"this path accepts {', '.join(allowed)}"
        return JSONResponse(
            error_body(code, message, hint), status_code=exc.status_code, headers=headers
        )

    @api.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(e.get("loc", [])), "message": e.get("msg", "")} for e in exc.errors()
        ]
        return JSONResponse(
            error_body("invalid_input", "the request is not valid", "see details", details),
            status_code=422,
        )


def document_body_errors(api: FastAPI) -> None:
    """Said once for every operation (routers included) rather than per route: one that takes a
    body can answer 400 (the body does not parse) and 413 (over the limit), one that looks at
    credentials 429 (rate limits), and its 422 has the one error shape, not FastAPI's default
    validation body."""
    from tastegraph.api.models import errors

    make_schema = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            schema = make_schema()
            ref = {"$ref": "#/components/schemas/ErrorBody"}
            for ops in schema["paths"].values():
                for op in ops.values():
                    codes = [400, 413] if "requestBody" in op else []
                    if op.get("x-permission", "public") != "public":
                        codes.append(429)  # rate limits: listing, and bad credentials
                    responses = op["responses"]
                    if "422" in responses:
                        responses.pop("422")
                        codes.append(422)
                    for code, spec in errors(*codes).items():
                        responses.setdefault(
                            str(code),
                            {
                                "description": spec["description"],
                                "content": {"application/json": {"schema": ref}},
                            },
                        )
            for unused in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(unused, None)
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]


def etags(header: str) -> set[str]:
    """The entity tags of an If-None-Match header (``W/`` prefixes dropped)."""
    return {t.strip().removeprefix("W/") for t in header.split(",") if t.strip()}


def allowed_methods(api: FastAPI, scope: Scope) -> list[str]:
    """Every method some route serves at this request's path (for a 405's Allow header).

    From the OpenAPI document (FastAPI keeps included routers' routes out of ``api.routes``)
    plus the app's own plain routes (the schema document itself, the web page).
    """
    from fastapi.routing import APIRoute
    from starlette.routing import Route, compile_path

    path = scope.get("path", "")
    methods: set[str] = set()
    # As OpenAPI says: a concrete path ("/pins/upload") wins over a template ("/pins/{pin_id}").
    matches = [
        (template.count("{"), ops)
        for template, ops in api.openapi()["paths"].items()
        if compile_path(template)[0].match(path)
    ]
    fewest = min((n for n, _ in matches), default=0)
    for n, ops in matches:
        if n == fewest:
            methods |= {m.upper() for m in ops}
    for route in api.router.routes:
        documented = isinstance(route, APIRoute) and route.include_in_schema
        if isinstance(route, Route) and not documented and route.path_regex.match(path):
            methods |= route.methods or set()
    return sorted(methods)


class CatchAll:
    """A last-resort 500 in the error shape that ends the request cleanly.

    Starlette's own handler for ``Exception`` answers and then re-raises, so the server logs a
    long traceback and may drop the keep-alive connection under the next request; here the
    error is logged once and the connection stays usable.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, receive, tracking)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:  # pragma: no cover - a body already on its way cannot be replaced
                raise
            resp = JSONResponse(
                error_body("internal", "internal error", "see the server log"), status_code=500
            )
            await resp(scope, _noop_receive, send)
