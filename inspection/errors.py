"""Errors a caller can act on. Each maps to one HTTP status in `inspection.api.errors`.

Every error carries a machine-readable `code`, a sentence saying what was wrong and, where we
know it, a `hint` saying what to do about it.
"""

from __future__ import annotations

from typing import Any


class InspectionError(Exception):
    """Base of all errors that reach a caller as a 4xx."""

    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code
        self.details = details or {}

    def to_body(self) -> dict[str, Any]:
        """The JSON body of the error response."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.hint:
            body["hint"] = self.hint
        if self.details:
            body["details"] = self.details
        return {"error": body}


class Unauthorized(InspectionError):
    status_code = 401
    code = "unauthorized"


class Forbidden(InspectionError):
    status_code = 403
    code = "forbidden"


class NotFound(InspectionError):
    status_code = 404
    code = "not_found"


class Conflict(InspectionError):
    status_code = 409
    code = "conflict"


class IllegalTransition(Conflict):
    """A lifecycle step that the return's current status does not allow."""

    code = "illegal_transition"

    def __init__(self, *, current_status: str, action: str, allowed: list[str] | None = None):
        super().__init__(
            f"cannot {action} a return whose status is {current_status}",
            hint=(
                f"from {current_status} the next steps are: {', '.join(allowed)}"
                if allowed
                else f"no further step is possible from {current_status}"
            ),
            details={"current_status": current_status, "action": action},
        )
        self.current_status = current_status


class InvalidInput(InspectionError):
    status_code = 422
    code = "invalid_input"


class PhotoRejected(InspectionError):
    """An upload that is not a usable photo (not an image, truncated, too big...)."""

    status_code = 422
    code = "photo_rejected"


class PhotoTooLarge(PhotoRejected):
    status_code = 413
    code = "photo_too_large"


class UnsupportedMediaType(PhotoRejected):
    status_code = 415
    code = "unsupported_media_type"


class ServiceUnavailable(InspectionError):
    """A dependency (model, database) is not ready; retrying later can succeed."""

    status_code = 503
    code = "unavailable"
