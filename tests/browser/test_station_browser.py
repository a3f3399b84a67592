"""The station in a real headless Chromium: scan, photograph, receive, inspect, refund.

Screenshots of every step (and of the QA, dashboard and portal pages) are saved under
test-artifacts/browser/ for a person to look at.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.browser.conftest import ARTIFACTS
from tests.station_ui.live_api import Seeder, customer_photo, station_photo

pytestmark = pytest.mark.browser


def _shot(page: Any, name: str) -> None:
    """Saves the whole page: Streamlit scrolls inside its own container, so the viewport is
    stretched to the content's height for the picture and put back after."""
    _wait_idle(page)
    height = page.evaluate(
        """() => {
            const block = document.querySelector('[data-testid="stMainBlockContainer"]');
            const main = document.querySelector('[data-testid="stMain"]');
            const bottom = block ? block.getBoundingClientRect().top + block.scrollHeight : 0;
            return Math.max(bottom + 80, main ? main.scrollHeight : 0);
        }"""
    )
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": min(max(height, 900), 8000)})
    # Streamlit draws skeletons while elements (re)mount and images stream in: wait them out.
    # Cosmetic only: a picture taken a moment early is still evidence, so a slow box goes on.
    with contextlib.suppress(PlaywrightTimeoutError):
        page.wait_for_function(
            """() => !document.querySelector('[data-testid="stSkeleton"]')
                && [...document.images].every(i => i.complete)""",
            timeout=20_000,
        )
    page.wait_for_timeout(400)  # let the re-layout settle before the picture
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    page.set_viewport_size(size)


def _wait_idle(page: Any) -> None:
    """Waits until Streamlit has finished the current script run."""
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached")


def test_station_flow_in_chromium(page: Any, station_url: str, browser_seeder: Seeder) -> None:
    ret = browser_seeder.label_sent_return()
    page.goto(station_url)
    page.get_by_role("heading", name="Inspection station").wait_for()
    _shot(page, "01-station-empty")
    # The scan field has the cursor, so a barcode scanner's keystrokes land in it.
    page.wait_for_function(
        "() => (document.activeElement?.getAttribute('aria-label') || '').startsWith('Scan')"
    )

    scan = page.get_by_label("Scan or type an RMA or order number, then Enter")
    scan.fill(ret["rma"])
    scan.press("Enter")  # what a barcode scanner sends after the code
    page.get_by_text("Status: Label sent").wait_for()
    page.get_by_text("Customer photos (2)").wait_for()
    _shot(page, "02-return-scanned")

    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        files=[{"name": "bench.jpg", "mimeType": "image/jpeg", "buffer": station_photo()}]
    )
    page.get_by_text("bench.jpg").wait_for()
    page.get_by_role("button", name="Grade station photos").click()
    page.get_by_text("1 station photo(s) graded").wait_for()
    page.get_by_text("Station photos (1)").wait_for()
    _shot(page, "03-station-photo-graded")

    page.get_by_role("button", name="Confirm receipt").click()
    page.get_by_text("Status: Item received").wait_for()
    _shot(page, "04-received")

    page.get_by_role("button", name="Confirm grade").click()
    page.get_by_text("Status: Inspected").wait_for()
    release = page.get_by_role("button", name="Release refund")
    release.wait_for()
    assert release.is_disabled(), "the refund needs the confirmation tick first"
    _shot(page, "05-inspected-refund-quote")

    page.get_by_text("I checked the item").click()
    _wait_idle(page)
    # An impatient double-click: the per-return idempotency key means one payment.
    page.locator("button:not([disabled])", has_text="Release refund").dblclick()
    page.get_by_text("Refund released").wait_for()
    page.get_by_text("Status: Refunded").wait_for()
    _shot(page, "06-refunded")

    after = browser_seeder.get_return(ret["id"])
    assert after["status"] == "refunded"
    assert after["refund"]["status"] in ("paid", "pending")
    audit = browser_seeder.http.get(
        f"/v1/returns/{ret['id']}/audit", headers={"X-API-Key": "demo-station-key"}
    ).json()
    released = [e for e in audit["events"] if e["action"] == "refund.released"]
    assert len(released) == 1, [e["action"] for e in audit["events"]]
    reference = str(after["refund"].get("adapter_reference") or after["refund"]["id"])
    assert page.get_by_text(reference).count() >= 1


def test_qa_dashboard_and_portal_render(
    page: Any, station_url: str, portal_url: str, browser_seeder: Seeder
) -> None:
    ret = browser_seeder.received_return()
    grade = browser_seeder.get_return(ret["id"])["item_grade"]["grade"]
    override = "reject" if grade != "reject" else "resell"
    browser_seeder.station_step(
        ret["id"], "inspection", json={"grade": override, "reason": "hinge cracked"}
    )

    page.goto(f"{station_url}/qa")
    page.get_by_role("heading", name="QA review").wait_for()
    page.get_by_text(ret["rma"]).first.wait_for()
    _shot(page, "10-qa")

    page.goto(f"{station_url}/dashboard")
    page.get_by_role("heading", name="Returns dashboard").wait_for()
    page.get_by_text("Automation rate").wait_for()
    _shot(page, "11-dashboard")

    order = browser_seeder.order()
    page.goto(portal_url)
    page.get_by_role("heading", name="Return an item").wait_for()
    page.get_by_label("Order number").fill(order["order_number"])
    page.get_by_label("E-mail").fill(order["customer"]["email"])
    page.get_by_role("button", name="Find my order").click()
    page.get_by_text("Tick the items to return").wait_for()
    _shot(page, "12-portal-items")

    page.get_by_text("Test phone 1 (PHONE-1)").click()
    page.locator('[data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name="Defective").click()
    page.get_by_role("button", name="Open return").click()
    page.get_by_text("Add photos of the item").wait_for()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        files=[
            {"name": f"side-{i}.jpg", "mimeType": "image/jpeg", "buffer": customer_photo(seed=i)}
            for i in (51, 52)
        ]
    )
    page.get_by_text("side-52.jpg").wait_for()
    page.get_by_role("button", name="Upload photos").click()
    page.get_by_text("(2 sent)").wait_for()
    page.get_by_text("we see:").first.wait_for()
    _shot(page, "13-portal-photo-feedback")

    page.get_by_role("button", name="Submit return").click()
    page.get_by_role("button", name="Refresh status").wait_for()
    _shot(page, "14-portal-submitted")
    opened = browser_seeder.http.get(
        "/v1/returns",
        params={"order_number": order["order_number"]},
        headers={"X-API-Key": "demo-station-key"},
    ).json()["data"]
    assert len(opened) == 1
    status = browser_seeder.get_return(opened[0]["id"])["status"]
    if status == "label_sent":
        page.get_by_text("Your return label").wait_for()
