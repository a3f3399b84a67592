"""Maps domain errors and request validation failures to JSON 4xx responses in one place.

No response ever carries a stack trace: unexpected errors are logged with a request id and the
caller gets that id to quote.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from inspection.errors import InspectionError

log = logging.getLogger(__name__)


def _field_messages(exc: RequestValidationError) -> list[dict[str, Any]]:
    fields = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "form")]
        fields.append({"field": ".".join(loc) or "body", "message": err.get("msg", "invalid")})
    return fields


def install_error_handlers(app: FastAPI) -> None:
    """Registers the handlers that turn every failure into `{"error": {...}}`."""

    @app.exception_handler(InspectionError)
    async def _domain_error(_: Request, exc: InspectionError) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content=exc.to_body())

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = _field_messages(exc)
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
        body = {
            "error": {
                "code": "invalid_input",
                "message": f"the request is not valid: {summary}",
                "hint": "fix the listed fields and send the request again",
                "details": {"fields": fields},
            }
        }
        return JSONResponse(status_code=422, content=body)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.status_code, "http_error"
        )
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        headers = getattr(exc, "headers", None)
        return JSONResponse(
            status_code=exc.status_code,
            content={"error": {"code": code, "message": message}},
            headers=headers,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        incident = uuid.uuid4().hex[:12]
        log.exception("unhandled error %s on %s %s", incident, request.method, request.url.path)
        return JSONResponse(
            status_code=500,
            content={
                "error": {
                    "code": "internal_error",
                    "message": "the service failed to handle this request",
                    "hint": f"retry; if it keeps failing, report incident {incident}",
                }
            },
        )


class BodySizeLimit:
    """ASGI middleware: refuses a request body over `max_bytes` with a JSON 413.

    A declared Content-Length over the limit is refused before any byte is read; a streamed
    body is cut off as soon as it passes the limit (the route sees an HTTPException, which the
    handler above turns into the error envelope), so nothing is parsed or stored.
    """

    def __init__(self, app: Any, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _error(self) -> StarletteHTTPException:
        return StarletteHTTPException(
            status_code=413,
            detail=(
                f"the request body is over the {self.max_bytes / 1e6:.1f} MB limit: send fewer "
                "or smaller photos per request"
            ),
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            error = self._error()
            response = JSONResponse(
                status_code=413,
                content={"error": {"code": "too_large", "message": error.detail}},
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._error()
            return message

        await self.app(scope, limited_receive, send)
