"""A real inspection API on a free localhost port, and seeding of orders and returns through it.

Shared by the AppTest tests (tests/station_ui) and the browser test (tests/browser): both drive
the UI against the same service a station would talk to, never a fake.
"""

from __future__ import annotations

import itertools
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from tests.fixtures.images import make_exif, make_photo_bytes

STATION_KEY = "demo-station-key"
QA_KEY = "demo-qa-key"
INTEGRATION_KEY = "demo-integration-key"
JSON = dict[str, Any]


def free_port() -> int:
    """A localhost port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_api_settings(*, workdir: Path, models_dir: Path) -> Any:
    """Service settings on a temporary SQLite file and blob folder, with the test models."""
    from inspection.settings import (
        DatabaseSettings,
        ModelSettings,
        Settings,
        StorageSettings,
        WebhookSettings,
    )

    settings = Settings()
    settings.database = DatabaseSettings(url=f"sqlite:///{workdir / 'inspection.db'}")
    settings.storage = StorageSettings(blob_dir=workdir / "blobs")
    settings.model = ModelSettings(dir=models_dir)
    # No webhook endpoints are registered in these tests: the worker would only poll.
    settings.webhook = WebhookSettings(run_worker=False)
    return settings


@contextmanager
def serve_api(settings: Any) -> Iterator[str]:
    """Runs `create_app(settings)` in uvicorn on a background thread; yields its base URL."""
    from inspection.api.main import create_app

    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="live-api", daemon=True)
    thread.start()
    # Wait for start-up (migrations, model loading) by its own signal, not by a fixed sleep.
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the inspection API failed to start; see the log above")
        thread.join(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def customer_photo(*, seed: int, defect: str | None = "crack") -> bytes:
    """A phone photo with EXIF taken just now (after delivery), as a customer's phone sends."""
    exif = make_exif(captured_at=datetime.now(UTC).replace(tzinfo=None))
    return make_photo_bytes(seed=seed, defect=defect, exif=exif)


def station_photo(*, seed: int = 40, defect: str | None = "crack") -> bytes:
    """A photo of the same kind of item as the station camera takes it."""
    return make_photo_bytes(seed=seed, defect=defect)


_CUSTOMER_SEEDS = itertools.count(20, 10)


class Seeder:
    """Creates orders and moves returns along their lifecycle through the real API."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=120)

    def _ok(self, response: httpx.Response) -> Any:
        assert response.status_code < 400, f"{response.request.url}: {response.text}"
        return response.json()

    def order(
        self, *, category: str = "electronics", price_cents: int = 19900, lines: int = 1
    ) -> JSON:
        """A fresh order delivered five days ago, with a unique number and customer."""
        tag = uuid.uuid4().hex[:10]
        now = datetime.now(UTC)
        body = {
            "order_number": f"ORD-{tag}",
            "customer": {
                "external_id": f"cust-{tag}",
                "email": f"buyer-{tag}@example.com",
                "name": "Test Buyer",
                "created_at": (now - timedelta(days=400)).isoformat(),
            },
            "ordered_at": (now - timedelta(days=8)).isoformat(),
            "delivered_at": (now - timedelta(days=5)).isoformat(),
            "currency": "EUR",
            "lines": [
                {
                    "sku": f"PHONE-{index + 1}",
                    "name": f"Test phone {index + 1}",
                    "category": category,
                    "price_cents": price_cents,
                    "quantity": 1,
                }
                for index in range(lines)
            ],
        }
        return self._ok(
            self.http.post("/v1/orders", json=body, headers={"X-API-Key": INTEGRATION_KEY})
        )

    def open_return(
        self, order: JSON, *, reason_code: str = "defective", line: int = 0
    ) -> tuple[JSON, str]:
        """Opens a return of one of the order's lines as its customer; returns it and the token."""
        body = {
            "order_number": order["order_number"],
            "email": order["customer"]["email"],
            "items": [
                {
                    "order_line_id": order["lines"][line]["id"],
                    "reason_code": reason_code,
                    "reason_text": "screen cracked when I unpacked it",
                }
            ],
        }
        opened = self._ok(self.http.post("/v1/returns", json=body))
        return opened["return"], opened["customer_token"]

    def customer_photos(self, return_id: int, token: str, *, count: int = 2) -> JSON:
        """Uploads `count` customer photos no other return has (the same photos on every
        return would be photo reuse, which holds refunds for review)."""
        first = next(_CUSTOMER_SEEDS)
        files = [
            ("files", (f"customer-{i}.jpg", customer_photo(seed=first + i), "image/jpeg"))
            for i in range(count)
        ]
        return self._ok(
            self.http.post(
                f"/v1/returns/{return_id}/photos",
                files=files,
                data={"source": "customer"},
                headers={"Authorization": f"Bearer {token}"},
            )
        )

    def submit(self, return_id: int, token: str) -> JSON:
        """Submits the return as its customer."""
        return self._ok(
            self.http.post(
                f"/v1/returns/{return_id}/submit", headers={"Authorization": f"Bearer {token}"}
            )
        )

    def approve(self, return_id: int) -> JSON:
        """A person approves a return the rules sent to review."""
        return self._ok(
            self.http.post(
                f"/v1/returns/{return_id}/decision",
                json={"outcome": "approve", "reason": "photos match the claim"},
                headers={"X-API-Key": QA_KEY},
            )
        )

    def get_return(self, return_id: int) -> JSON:
        """The return as the station sees it."""
        return self._ok(
            self.http.get(f"/v1/returns/{return_id}", headers={"X-API-Key": STATION_KEY})
        )

    def label_sent_return(self) -> JSON:
        """order -> return -> customer photos -> submit (-> approve if reviewed): label_sent."""
        order = self.order()
        ret, token = self.open_return(order)
        self.customer_photos(ret["id"], token)
        ret = self.submit(ret["id"], token)
        if ret["status"] == "needs_review":
            ret = self.approve(ret["id"])
        assert ret["status"] == "label_sent", f"seeded return ended {ret['status']}: {ret}"
        return ret

    def station_step(self, return_id: int, path: str, **kwargs: Any) -> JSON:
        """A station action (receive, inspection, ...) on the return."""
        return self._ok(
            self.http.post(
                f"/v1/returns/{return_id}/{path}", headers={"X-API-Key": STATION_KEY}, **kwargs
            )
        )

    def received_return(self) -> JSON:
        """A label_sent return photographed at the station and received: item_received."""
        ret = self.label_sent_return()
        files = [("files", ("station.jpg", station_photo(), "image/jpeg"))]
        data = {"source": "station", "return_item_id": str(ret["items"][0]["id"])}
        self.station_step(ret["id"], "photos", files=files, data=data)
        ret = self.station_step(ret["id"], "receive")
        assert ret["status"] == "item_received", ret
        return ret

    def close(self) -> None:
        """Closes the HTTP client."""
        self.http.close()
