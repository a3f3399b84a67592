"""Typed HTTP client for the inspection API, one method per endpoint the apps use.

Every failure (4xx/5xx, unreachable API, timeout, non-JSON answer) becomes an `ApiError` whose
`message` and `hint` can be shown to a person as they are; no traceback reaches the page.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

import httpx

log = logging.getLogger(__name__)

JSON = dict[str, Any]
Grade = Literal["resell", "refurbish", "reject"]
PhotoSource = Literal["customer", "station"]
PhotoView = Literal["image", "annotated", "heatmap"]
# (file name, bytes, MIME type): what st.file_uploader / st.camera_input give us.
PhotoFile = tuple[str, bytes, str]


def refund_idempotency_key(*, return_id: int) -> str:
    """One key per return: however often the button is pressed, the refund is paid once."""
    return f"station-refund-return-{return_id}"


@dataclass
class ApiError(Exception):
    """An API call that did not succeed, in words a person can act on."""

    message: str
    hint: str | None = None
    code: str = "error"
    status: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    @property
    def current_status(self) -> str | None:
        """The return's status the API reported with a 409 illegal lifecycle step."""
        value = self.details.get("current_status")
        return str(value) if value is not None else None


def _error_from_response(response: httpx.Response) -> ApiError:
    """Turns the API's `{"error": {code, message, hint, details}}` body into an ApiError."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        details = error.get("details")
        return ApiError(
            message=str(error["message"]),
            hint=str(error["hint"]) if error.get("hint") else None,
            code=str(error.get("code") or "error"),
            status=response.status_code,
            details=details if isinstance(details, dict) else {},
        )
    # Only the status is trustworthy here: never echo an unknown body (it could be a trace).
    return ApiError(
        message=f"the inspection API answered {response.status_code} {response.reason_phrase}",
        hint="retry; if it keeps failing, tell the service operator",
        code="http_error",
        status=response.status_code,
    )


class InspectionApi:
    """Calls the inspection API as one role (staff API key) or as one customer (token)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        customer_token: str | None = None,
        timeout_seconds: float = 15.0,
        upload_timeout_seconds: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.customer_token = customer_token
        self._headers: dict[str, str] = {"Accept": "application/json"}
        if api_key:
            self._headers["X-API-Key"] = api_key
        if customer_token:
            self._headers["Authorization"] = f"Bearer {customer_token}"
        self._timeout = timeout_seconds
        self._upload_timeout = upload_timeout_seconds
        self._transport = transport

    # -- plumbing ---------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        url = f"{self.base_url}{path}"
        try:
            with httpx.Client(
                headers=self._headers, timeout=timeout or self._timeout, transport=self._transport
            ) as http:
                response = http.request(method, url, headers=headers, **kwargs)
        except httpx.TimeoutException:
            raise ApiError(
                message=f"the inspection API did not answer in time ({method} {path})",
                hint="retry in a moment; if grading is slow, fewer photos per upload help",
                code="timeout",
            ) from None
        except httpx.HTTPError as exc:
            log.warning("API unreachable at %s: %s", self.base_url, exc)
            raise ApiError(
                message=f"the inspection API at {self.base_url} is not reachable",
                hint="start it (make run) or set INSPECTION_UI_API_URL to where it runs",
                code="unreachable",
            ) from None
        if response.status_code >= 400:
            raise _error_from_response(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                message=f"the inspection API sent an unreadable answer to {method} {path}",
                hint="check that INSPECTION_UI_API_URL points at the inspection API",
                code="bad_response",
                status=response.status_code,
            ) from None

    @staticmethod
    def _params(**values: Any) -> dict[str, Any]:
        """Query parameters without the unset ones; datetimes as ISO-8601."""
        return {
            key: value.isoformat() if isinstance(value, datetime) else value
            for key, value in values.items()
            if value is not None and value != ""
        }

    # -- orders -----------------------------------------------------------------------------

    def get_order(self, order_number: str) -> JSON:
        """GET /v1/orders/{order_number}: the order with its lines and customer."""
        return self._json("GET", f"/v1/orders/{quote(order_number, safe='')}")

    def create_order(self, order: JSON) -> JSON:
        """POST /v1/orders: registers an order (integration role)."""
        return self._json("POST", "/v1/orders", json=order)

    # -- returns ----------------------------------------------------------------------------

    def open_return(self, *, order_number: str, email: str, items: Sequence[JSON]) -> JSON:
        """POST /v1/returns: opens a return; answers `{return, customer_token}`."""
        body = {"order_number": order_number, "email": email, "items": list(items)}
        return self._json("POST", "/v1/returns", json=body)

    def get_return(self, return_id: int) -> JSON:
        """GET /v1/returns/{id}: the return with photos, grade, decision, refund and label."""
        return self._json("GET", f"/v1/returns/{return_id}")

    def find_returns(
        self,
        *,
        rma: str | None = None,
        order_number: str | None = None,
        status: str | None = None,
        limit: int = 50,
    ) -> JSON:
        """GET /v1/returns: returns matching an RMA, order number or status."""
        params = self._params(rma=rma, order_number=order_number, status=status, limit=limit)
        return self._json("GET", "/v1/returns", params=params)

    def upload_photos(
        self,
        return_id: int,
        *,
        photos: Sequence[PhotoFile],
        source: PhotoSource,
        return_item_id: int | None = None,
    ) -> JSON:
        """POST /v1/returns/{id}/photos: stores, quality-checks and grades the photos."""
        files = [("files", (name, content, mime)) for name, content, mime in photos]
        data: dict[str, str] = {"source": source}
        if return_item_id is not None:
            data["return_item_id"] = str(return_item_id)
        return self._json(
            "POST",
            f"/v1/returns/{return_id}/photos",
            files=files,
            data=data,
            timeout=self._upload_timeout,
        )

    def submit_return(self, return_id: int) -> JSON:
        """POST /v1/returns/{id}/submit: runs eligibility, fraud signals and the decision."""
        return self._json("POST", f"/v1/returns/{return_id}/submit", timeout=self._upload_timeout)

    def decide_return(
        self, return_id: int, *, outcome: Literal["approve", "reject"], reason: str
    ) -> JSON:
        """POST /v1/returns/{id}/decision: a person decides a return that needs review."""
        body = {"outcome": outcome, "reason": reason}
        return self._json("POST", f"/v1/returns/{return_id}/decision", json=body)

    def receive_return(self, return_id: int) -> JSON:
        """POST /v1/returns/{id}/receive: the parcel arrived at the station."""
        return self._json("POST", f"/v1/returns/{return_id}/receive", timeout=self._upload_timeout)

    def confirm_inspection(self, return_id: int) -> JSON:
        """POST /v1/returns/{id}/inspection: the inspector confirms the model's grade."""
        return self._json("POST", f"/v1/returns/{return_id}/inspection", json={"confirm": True})

    def override_grade(self, return_id: int, *, grade: Grade, reason: str) -> JSON:
        """POST /v1/returns/{id}/inspection: the inspector sets another grade, with a reason."""
        body = {"grade": grade, "reason": reason}
        return self._json("POST", f"/v1/returns/{return_id}/inspection", json=body)

    def refund_quote(self, return_id: int) -> JSON:
        """GET /v1/returns/{id}/refund-quote: the amount a refund would pay now."""
        return self._json("GET", f"/v1/returns/{return_id}/refund-quote")

    def release_refund(self, return_id: int, *, idempotency_key: str) -> JSON:
        """POST /v1/returns/{id}/refund: pays once; a retry with the same key gets that refund."""
        return self._json(
            "POST",
            f"/v1/returns/{return_id}/refund",
            headers={"Idempotency-Key": idempotency_key},
        )

    def close_return(self, return_id: int) -> JSON:
        """POST /v1/returns/{id}/close: nothing more happens to a refunded or rejected return."""
        return self._json("POST", f"/v1/returns/{return_id}/close")

    def audit(self, return_id: int) -> JSON:
        """GET /v1/returns/{id}/audit: the return's hash-chained history."""
        return self._json("GET", f"/v1/returns/{return_id}/audit")

    # -- photos -----------------------------------------------------------------------------

    def photo_bytes(self, photo_id: int, *, kind: PhotoView = "annotated") -> bytes:
        """GET /v1/photos/{id}/annotated (defect boxes drawn), /image (the original) or
        /heatmap (where the grader saw damage; staff only)."""
        return self._send("GET", f"/v1/photos/{photo_id}/{kind}").content

    def return_label(self, return_id: int) -> bytes:
        """GET /v1/returns/{id}/label: the printable return label as PNG."""
        return self._send("GET", f"/v1/returns/{return_id}/label").content

    # -- QA and insights --------------------------------------------------------------------

    def qa_queue(self, *, limit: int = 50) -> JSON:
        """GET /v1/qa/queue: photos most likely misgraded, highest mistakenness first."""
        return self._json("GET", "/v1/qa/queue", params={"limit": limit})

    def qa_label(self, *, photo_id: int, grade: Grade, reason: str) -> JSON:
        """POST /v1/qa/labels: QA's corrected grade for one photo."""
        body = {"photo_id": photo_id, "grade": grade, "reason": reason}
        return self._json("POST", "/v1/qa/labels", json=body)

    def qa_export(self, *, since: datetime | None = None) -> Any:
        """GET /v1/qa/labels/export: the corrections as JSON for retraining."""
        return self._json("GET", "/v1/qa/labels/export", params=self._params(since=since))

    def qa_confusion(self, *, since: datetime | None = None, until: datetime | None = None) -> JSON:
        """GET /v1/qa/confusion: model vs human grades (rows human, columns model)."""
        params = self._params(since=since, until=until)
        return self._json("GET", "/v1/qa/confusion", params=params)

    def reviews(self) -> Any:
        """GET /v1/reviews: returns waiting for a person's decision, by value x risk."""
        return self._json("GET", "/v1/reviews")

    def stats(self, *, since: datetime | None = None, until: datetime | None = None) -> JSON:
        """GET /v1/stats: automation, review rate, cycle time, grade mix, top defects/reasons."""
        return self._json("GET", "/v1/stats", params=self._params(since=since, until=until))
