"""The UI's API client: errors become readable messages, requests carry the right headers.

A mock transport isolates the client's own mapping here; the live-API tests run every call
for real against the service.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from station_ui.client import ApiError, InspectionApi, refund_idempotency_key
from station_ui.display import format_money


def _api(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> InspectionApi:
    return InspectionApi("http://api.test/", transport=httpx.MockTransport(handler), **kwargs)


def test_error_body_becomes_message_hint_and_status() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            409,
            json={
                "error": {
                    "code": "illegal_transition",
                    "message": "cannot receive a return whose status is refunded",
                    "hint": "from refunded the next steps are: close",
                    "details": {"current_status": "refunded"},
                }
            },
        )

    with pytest.raises(ApiError) as caught:
        _api(handler, api_key="k").receive_return(7)
    error = caught.value
    assert error.status == 409
    assert error.code == "illegal_transition"
    assert error.message == "cannot receive a return whose status is refunded"
    assert error.hint == "from refunded the next steps are: close"
    assert error.current_status == "refunded"
    assert str(error) == f"{error.message} ({error.hint})"


def test_unknown_error_body_is_never_echoed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="Traceback (most recent call last): secret")

    with pytest.raises(ApiError) as caught:
        _api(handler).get_return(1)
    assert caught.value.status == 502
    assert "Traceback" not in str(caught.value)
    assert "502" in caught.value.message


def test_unreachable_api_says_where_and_what_to_do() -> None:
    with socket.socket() as sock:  # a port nobody listens on: bind, read it, close
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api = InspectionApi(f"http://127.0.0.1:{port}", api_key="k", timeout_seconds=2)
    with pytest.raises(ApiError) as caught:
        api.find_returns(rma="RMA-000001")
    assert caught.value.code == "unreachable"
    assert f"127.0.0.1:{port}" in caught.value.message
    assert caught.value.hint and "INSPECTION_UI_API_URL" in caught.value.hint


def test_requests_carry_role_key_token_idempotency_key_and_multipart() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"ok": True})

    staff = _api(handler, api_key="demo-station-key")
    staff.release_refund(5, idempotency_key=refund_idempotency_key(return_id=5))
    staff.upload_photos(5, photos=[("a.jpg", b"\xff\xd8jpeg", "image/jpeg")], source="station")
    staff.find_returns(order_number="A 1", status=None)
    customer = _api(handler, customer_token="tok")
    customer.get_order("A/1")

    refund, upload, listing, order = seen
    assert refund.headers["X-API-Key"] == "demo-station-key"
    assert refund.headers["Idempotency-Key"] == refund_idempotency_key(return_id=5)
    assert refund.url.path == "/v1/returns/5/refund"
    body = upload.read()
    assert b'name="source"' in body and b"station" in body
    assert b'filename="a.jpg"' in body
    assert dict(listing.url.params) == {"order_number": "A 1", "limit": "50"}
    assert order.headers["Authorization"] == "Bearer tok"
    assert "X-API-Key" not in order.headers
    assert order.url.raw_path == b"/v1/orders/A%2F1"


def test_refund_key_is_stable_per_return() -> None:
    assert refund_idempotency_key(return_id=3) == refund_idempotency_key(return_id=3)
    assert refund_idempotency_key(return_id=3) != refund_idempotency_key(return_id=4)


@pytest.mark.parametrize(
    ("cents", "currency", "text"),
    [(123456, "EUR", "EUR 1,234.56"), (5, "USD", "USD 0.05"), (-250, "GBP", "GBP -2.50")],
)
def test_money_is_formatted_from_integer_cents(cents: int, currency: str, text: str) -> None:
    assert format_money(cents, currency) == text


def test_settings_come_from_inspection_ui_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from station_ui.settings import load_settings

    monkeypatch.setenv("INSPECTION_UI_API_URL", "http://api.internal:9000")
    monkeypatch.setenv("INSPECTION_UI_STATION_KEY", "station-key-from-env")
    monkeypatch.setenv("INSPECTION_UI_TIMEOUT_SECONDS", "3.5")
    settings = load_settings()
    assert settings.api_url == "http://api.internal:9000"
    assert settings.station_key == "station-key-from-env"
    assert settings.timeout_seconds == 3.5
    assert settings.qa_key == "demo-qa-key"
    monkeypatch.setenv("INSPECTION_UI_TIMEOUT_SECONDS", "0")
    with pytest.raises(ValueError, match="timeout_seconds"):
        load_settings()
