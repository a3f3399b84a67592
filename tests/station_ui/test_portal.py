"""Customer portal against the real API: find the order, open a return, photos, submit."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from station_ui.client import ApiError, InspectionApi
from tests.station_ui.live_api import Seeder, customer_photo
from tests.station_ui.ui_steps import assert_no_errors, click, page_text


def _find(at: AppTest, order_number: str, email: str) -> AppTest:
    at.text_input(key="order_number_input").input(order_number)
    at.text_input(key="email_input").input(email)
    return click(at, "Find my order")


def test_customer_opens_return_uploads_photos_and_sees_label(
    seeder: Seeder, new_portal_app: Callable[[], AppTest]
) -> None:
    order = seeder.order()
    at = new_portal_app().run()
    assert_no_errors(at)

    _find(at, order["order_number"], "someone-else@example.com")
    errors = " ".join(e.value for e in at.error)
    assert "could not find an order with that number and e-mail" in errors
    assert "Test phone" not in page_text(at), "a wrong e-mail must reveal nothing of the order"

    _find(at, order["order_number"], order["customer"]["email"].upper())
    assert_no_errors(at)
    line_id = order["lines"][0]["id"]
    at.checkbox(key=f"return_line_{line_id}").check()
    at.selectbox(key=f"reason_line_{line_id}").set_value("defective")
    at.text_input(key=f"reason_text_line_{line_id}").input("cracked out of the box")
    click(at, "Open return")
    assert_no_errors(at)
    token = at.session_state["portal_token"]
    ret = at.session_state["portal_return"]
    assert token and ret["status"] == "return_requested"
    assert f"Return {ret['rma']}" in page_text(at)
    submit = next(b for b in at.button if b.label == "Submit return")
    assert submit.disabled, "submitting needs a photo first"

    at.file_uploader(key="portal_files").set_value(
        [
            ("front.jpg", customer_photo(seed=31), "image/jpeg"),
            ("back.jpg", customer_photo(seed=32), "image/jpeg"),
        ]
    )
    click(at, "Upload photos")
    assert not at.exception
    text = page_text(at)
    assert "(2 sent)" in text
    assert text.count("we see:") == 2, "each photo gets its grade and quality feedback at once"

    click(at, "Submit return")
    assert not at.exception
    status = at.session_state["portal_return"]["status"]
    assert status in ("label_sent", "needs_review", "approved")
    text = page_text(at)
    if status == "label_sent":
        assert "Your return label" in text
        assert at.session_state["portal_return"]["label"]["tracking_number"] in text
    else:
        assert "A member of our team will look at your return" in text

    # The token the portal holds reaches this return only.
    other = seeder.label_sent_return()
    with pytest.raises(ApiError) as caught:
        InspectionApi(seeder.base_url, customer_token=token).get_return(other["id"])
    assert caught.value.status in (403, 404)


def test_blurry_dark_photo_gets_retake_advice(
    seeder: Seeder, new_portal_app: Callable[[], AppTest]
) -> None:
    from tests.fixtures.images import make_photo_bytes

    order = seeder.order()
    at = _find(new_portal_app().run(), order["order_number"], order["customer"]["email"])
    line_id = order["lines"][0]["id"]
    at.checkbox(key=f"return_line_{line_id}").check()
    click(at, "Open return")
    assert "no reason chosen for Test phone 1" in " ".join(e.value for e in at.error)
    at.selectbox(key=f"reason_line_{line_id}").set_value("no_longer_needed")
    click(at, "Open return")
    assert_no_errors(at)
    dark = make_photo_bytes(seed=5, light=0.12, blur_sigma=6.0)
    at.file_uploader(key="portal_files").set_value([("dark.jpg", dark, "image/jpeg")])
    click(at, "Upload photos")
    assert not at.exception
    advice = " ".join(w.value for w in at.warning)
    assert "Retake" in advice, page_text(at)
